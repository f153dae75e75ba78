"""KSampler-compatible nodes: the core KSampler's and KSamplerAdvanced's
inputs in the core's order, then ours. A workflow built with the core node
switches to ours by changing the node type."""

from . import host
from ..schedules import SCHEDULES
from .widgets import (EXPERT_NAMES, MAX_SEED, check_ranges, check_restart,
                      check_sampling_inputs, control_inputs, control_values, eta_value,
                      expert_inputs, expert_values, noise_strength_input, noise_type_inputs,
                      resolve_scheduler, s_noise_input, sampler_input, scheduler_input,
                      variation_value)

CATEGORY = "sampling/sampler_lab"


def _common_inputs():
    return {
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                          "tooltip": "Number of steps of the schedule."}),
        "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                          "round": 0.01, "tooltip": "Classifier-free guidance scale."}),
        "sampler_name": sampler_input(),
        "scheduler": scheduler_input(),
        "positive": ("CONDITIONING", {"tooltip": "What the image should show."}),
        "negative": ("CONDITIONING", {"tooltip": "What the image should not show."}),
        "latent_image": ("LATENT", {"tooltip": "The latent to denoise."}),
    }


def _ours():
    """Our inputs after the core's, optional: a prompt saved with the core's
    node has none of them and runs with their defaults once its type is
    changed to ours (the frontend also draws optional widgets after the
    required ones, so the order of saved widget values is unchanged)."""
    return {"noise_strength": noise_strength_input(), "s_noise": s_noise_input()}


def size_params(scheduler, model, latent):
    """width and height (image pixels, from the latent) for the schedules
    that take them (flux2, ideogram4); {} for the others."""
    params = SCHEDULES[scheduler].params if scheduler in SCHEDULES else {}
    if latent is None or "width" not in params:
        return {}
    width, height = host.latent_pixels(model, latent)
    return {"width": width, "height": height}


def _optional(experts=False):
    """Every optional input, in the frozen order: ours, the controls, the
    variation seed and noise types, then (KSampler (Advanced)) the second
    expert; all but ours advanced."""
    return {**_ours(), **control_inputs(), **noise_type_inputs(),
            **(expert_inputs() if experts else {})}


def _noise_args(controls):
    """Pops the noise inputs out of the node's keyword arguments."""
    variation = variation_value(controls.pop("variation_seed", 0),
                                controls.pop("variation_strength", 0.0))
    return {"variation": variation, "noise_type": controls.pop("noise_type", "gaussian"),
            "fresh_noise": controls.pop("fresh_noise", "brownian")}


def with_sigmas(result, sigmas, model=None):
    """The node's outputs plus the sigmas it used and, given the model, its
    family, process and shift (host.model_family), for the web widget
    (ComfyUI sends the "ui" part to the browser as the node's output)."""
    used = [] if sigmas is None else [float(v) for v in sigmas]
    ui = {"sampler_lab_sigmas": used}
    if model is not None:
        ui["sampler_lab_model"] = [host.model_family(model)]
    return {"ui": ui, "result": result}


def _run(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent,
         denoise, noise_strength, s_noise, add_noise=True, start_step=None, last_step=None,
         force_full_denoise=False, controls=None):
    controls = dict(controls or {})
    noise = _noise_args(controls)
    eta = eta_value(noise_strength)
    experts = expert_values({k: controls.pop(k) for k in EXPERT_NAMES if k in controls})
    window, engine_controls = control_values(sampler_name, controls)
    scheduler, params = resolve_scheduler(scheduler)
    params.update(size_params(scheduler, model, latent))
    sigmas = host.schedule(model, scheduler, steps, denoise,
                           discard_penultimate=host.core_discards_penultimate(sampler_name),
                           **params)
    # start/end steps exactly as the core KSampler applies them.
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return with_sigmas((latent.copy(),), None, model)
    sampler = host.LabKSAMPLER(sampler_name, eta=eta, s_noise=s_noise, noise_window=window,
                               controls=engine_controls, experts=experts,
                               fresh_noise=noise["fresh_noise"], variation=noise["variation"])
    if experts is not None:
        model = host.with_expert(model, experts["model_low"])
    return with_sigmas((host.sample(model, seed, cfg, sampler, sigmas, positive, negative,
                                    latent, add_noise=add_noise, noise_type=noise["noise_type"],
                                    variation=noise["variation"]),), sigmas, model)


def _validate_restart(cls, restart=None):
    """VALIDATE_INPUTS on hosts that check every declared input's range and
    list themselves (HOST_CHECKS_OPTIONAL_INPUTS): only the restart text,
    which no declaration describes. The host reports a failure once per
    argument, so one argument gives one error on the input that holds it."""
    return check_restart(restart)


def _validate_inputs(cls, sampler_name=None, scheduler=None, restart=None, noise_strength=None,
                     s_noise=None, noise_start=None, noise_end=None, s_churn=None, s_tmin=None,
                     s_tmax=None, detail_amount=None, detail_start=None, detail_end=None,
                     detail_bias=None, detail_exponent=None, variation_strength=None,
                     boundary=None, cfg_low=None):
    """Both KSamplers' VALIDATE_INPUTS on hosts that check only required
    inputs: the host passes the inputs named here."""
    if variation_strength is not None:
        ok = check_ranges(noise_type_inputs(), variation_strength=variation_strength)
        if ok is not True:
            return ok
    ok = check_sampling_inputs(
        sampler_name, scheduler, restart, noise_strength=noise_strength, s_noise=s_noise,
        noise_start=noise_start, noise_end=noise_end, s_churn=s_churn, s_tmin=s_tmin,
        s_tmax=s_tmax, detail_amount=detail_amount, detail_start=detail_start,
        detail_end=detail_end, detail_bias=detail_bias, detail_exponent=detail_exponent)
    return ok if ok is not True else check_ranges(expert_inputs(), boundary=boundary,
                                                  cfg_low=cfg_low)


class LabKSampler:
    DESCRIPTION = ("The core KSampler with Sampler Lab's samplers and schedules: correct on "
                   "eps, v and flow models, with a noise-strength knob for every sampler.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                             "control_after_generate": True,
                             "tooltip": "Seed of the initial noise and of stochastic steps."}),
            **_common_inputs(),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Fraction of the schedule to run (img2img)."}),
        }, "optional": _optional()}

    VALIDATE_INPUTS = classmethod(_validate_restart if host.HOST_CHECKS_OPTIONAL_INPUTS
                                  else _validate_inputs)

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, denoise=1.0, noise_strength=-1.0, s_noise=1.0, **controls):
        return _run(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                    latent_image, denoise, noise_strength, s_noise, controls=controls)


class LabKSamplerAdvanced:
    DESCRIPTION = ("The core KSampler (Advanced) with Sampler Lab's samplers and schedules, "
                   "for base/refiner chains: start and end steps, leftover noise.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The latent after the chosen range of steps.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model."}),
            "add_noise": (["enable", "disable"], {"tooltip": "Add the seed's noise first "
                                                             "(disable to continue a run)."}),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                   "control_after_generate": True,
                                   "tooltip": "Seed of the noise and of stochastic steps."}),
            **_common_inputs(),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000,
                                      "tooltip": "First step to run."}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000,
                                    "tooltip": "Step to stop at."}),
            "return_with_leftover_noise": (["disable", "enable"], {
                "tooltip": "enable: stop with the noise of end_at_step left in (for a "
                           "refiner); disable: finish with a denoise to 0."}),
        }, "optional": _optional(experts=True)}

    VALIDATE_INPUTS = classmethod(_validate_restart if host.HOST_CHECKS_OPTIONAL_INPUTS
                                  else _validate_inputs)

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler,
               positive, negative, latent_image, start_at_step, end_at_step,
               return_with_leftover_noise, noise_strength=-1.0, s_noise=1.0, **controls):
        return _run(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                    latent_image, 1.0, noise_strength, s_noise,
                    add_noise=add_noise == "enable", start_step=start_at_step,
                    last_step=end_at_step,
                    force_full_denoise=return_with_leftover_noise != "enable",
                    controls=controls)
