"""SAMPLER and SIGMAS nodes for the core SamplerCustom / SamplerCustomAdvanced."""
import torch

from . import host
from .ksampler import size_params, with_sigmas
from .widgets import (CONTROL_NAMES, DEFAULT_SCHEDULER, EXPERT_NAMES, SCHEDULER_CHOICES,
                      MAX_SEED, check_names, check_ranges, check_restart,
                      check_sampling_inputs, control_inputs, control_values, eta_value,
                      expert_inputs, expert_values, fresh_noise_input, initial_noise_input,
                      late_sampler_option_inputs, noise_strength_input, resolve_scheduler,
                      s_noise_input, sampler_input, sampler_option_inputs, sampler_options,
                      schedule_param_inputs, schedule_params, variation_inputs,
                      variation_value)
from ..schedules import get_sigmas, parse_sigmas

CATEGORY = "sampling/sampler_lab"


class LabSampler:
    DESCRIPTION = ("A Sampler Lab sampler for SamplerCustom / SamplerCustomAdvanced: the "
                   "algorithm, its noise strength, and its method options (a widget named "
                   "<sampler>_<option> only affects that sampler); then the controls every "
                   "sampler takes: noise window, churn, restart, detail. Increasing SIGMAS "
                   "(the core's FlipSigmas) unsample with a deterministic sampler.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("The sampler, for a SamplerCustom node.",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampler_name": sampler_input(),
                             "noise_strength": noise_strength_input(),
                             "s_noise": s_noise_input()},
                # saved workflows keep widget values by position: the controls
                # come after every option that existed when they were added
                "optional": {**sampler_option_inputs(), **control_inputs(),
                             **late_sampler_option_inputs(), **expert_inputs(),
                             "fresh_noise": fresh_noise_input()}}

    @classmethod
    def _validate_all(cls, sampler_name=None, restart=None, noise_strength=None, s_noise=None,
                      noise_start=None, noise_end=None, s_churn=None,
                      s_tmin=None, s_tmax=None, detail_amount=None, detail_start=None,
                      detail_end=None, detail_bias=None, detail_exponent=None,
                      boundary=None, cfg_low=None):
        ok = check_sampling_inputs(
            sampler_name, None, restart, noise_strength=noise_strength, s_noise=s_noise,
            noise_start=noise_start, noise_end=noise_end, s_churn=s_churn, s_tmin=s_tmin,
            s_tmax=s_tmax, detail_amount=detail_amount, detail_start=detail_start,
            detail_end=detail_end, detail_bias=detail_bias, detail_exponent=detail_exponent)
        return ok if ok is not True else check_ranges(expert_inputs(), boundary=boundary,
                                                      cfg_low=cfg_low)

    @classmethod
    def _validate_restart(cls, restart=None):
        return check_restart(restart)

    # one argument where the host checks the others itself (see ksampler.py)
    VALIDATE_INPUTS = _validate_restart if host.HOST_CHECKS_OPTIONAL_INPUTS else _validate_all

    def get_sampler(self, sampler_name, noise_strength=-1.0, s_noise=1.0, **options):
        controls = {k: options.pop(k) for k in CONTROL_NAMES if k in options}
        experts = expert_values({k: options.pop(k) for k in EXPERT_NAMES if k in options})
        fresh = options.pop("fresh_noise", "brownian")
        window, engine_controls = control_values(sampler_name, controls)
        return (host.LabKSAMPLER(sampler_name, eta=eta_value(noise_strength), s_noise=s_noise,
                                 options=sampler_options(sampler_name, options),
                                 noise_window=window, controls=engine_controls,
                                 experts=experts, fresh_noise=fresh),)


class LabScheduler:
    DESCRIPTION = ("Sampler Lab's schedules as SIGMAS for the model: the core's denoise "
                   "semantics, and each schedule's parameters (a widget named "
                   "<schedule>_<parameter> only affects that schedule).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("steps + 1 decreasing noise levels ending in 0.",)
    FUNCTION = "get_sigmas"

    @classmethod
    def VALIDATE_INPUTS(cls, scheduler=None):
        return check_names(scheduler=scheduler)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model whose noise levels to use."}),
            "scheduler": (SCHEDULER_CHOICES, {"default": DEFAULT_SCHEDULER,
                                               "tooltip": "The schedule."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "Number of steps."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Fraction of the schedule to keep (img2img)."}),
        }, "optional": {**schedule_param_inputs(),
                        "latent": ("LATENT", {"tooltip": "Optional: the latent to be sampled; "
                                                         "flux2 and ideogram4 read the image's "
                                                         "width and height from it (else their "
                                                         "width and height widgets)."})}}

    def get_sigmas(self, model, scheduler, steps, denoise=1.0, latent=None, **params):
        ours, alias_params = resolve_scheduler(scheduler)
        # another pack's name (an API prompt) brings its own parameters
        values = alias_params if ours != scheduler else schedule_params(scheduler, params)
        scheduler = ours
        values.update(size_params(scheduler, model, latent))
        sigmas = host.schedule(model, scheduler, steps, denoise, **values)
        return with_sigmas((sigmas,), sigmas, model)


class LabCustomSigmas:
    DESCRIPTION = "SIGMAS typed as text: comma-separated noise levels, largest first."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("The sigmas, with a final 0 appended if missing.",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("STRING", {
            "default": "14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, "
                       "0.152, 0",
            "multiline": True,
            "tooltip": "Comma-separated sigmas, strictly decreasing; a final 0 is added "
                       "if missing. Parsed as numbers, never evaluated."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, sigmas):
        try:
            _custom_sigmas(sigmas)
        except ValueError as exc:
            return str(exc)
        return True

    def get_sigmas(self, sigmas):
        steps = len(_custom_sigmas(sigmas)) - 1
        values = get_sigmas("custom", steps, text=sigmas)
        return with_sigmas((values,), values)


def _custom_sigmas(text):
    """parse_sigmas, plus: at least one step (a lone 0 has none)."""
    values = parse_sigmas(text)
    if len(values) < 2:
        raise ValueError(f"sigmas: {text.strip()!r} has no noise level above 0; give at least "
                         f"one before the final 0, largest first, e.g. '14.6, 7.0, 0'")
    return values


class LabSigmasPreview:
    DESCRIPTION = ("Plots any SIGMAS on the node (for example a schedule built with the "
                   "core's BasicScheduler, SplitSigmas or FlipSigmas) and passes them on "
                   "unchanged.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("The same sigmas, unchanged.",)
    OUTPUT_NODE = True  # runs (and plots) even where nothing uses its output
    FUNCTION = "preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS", {"tooltip": "The sigmas to plot."})}}

    def preview(self, sigmas):
        return with_sigmas((sigmas,), sigmas)


class LabNoise:
    DESCRIPTION = ("NOISE for SamplerCustomAdvanced: the seed's initial noise of a chosen type, "
                   "and a variation seed (0: the seed's image bit for bit, 1: the variation "
                   "seed's). Our Sampler nodes' fresh noise follows the variation too.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("NOISE",)
    OUTPUT_TOOLTIPS = ("The noise, for SamplerCustomAdvanced.",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls):
        variation = variation_inputs()
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                             "control_after_generate": True,
                             "tooltip": "Seed of the initial noise and of stochastic steps."}),
            "noise_type": initial_noise_input(),
            "variation_seed": variation["variation_seed"],
            "variation_strength": variation["variation_strength"],
        }, "optional": {
            "add_noise": ("BOOLEAN", {"default": True, "tooltip": (
                "Off: no initial noise (continue a run, e.g. the second half of SplitSigmas), "
                "while the seed still drives the fresh noise, so the split run equals one run "
                "(the core's DisableNoise hands the sampler seed 0).")}),
        }}

    def get_noise(self, seed, noise_type="gaussian", variation_seed=0, variation_strength=0.0,
                  add_noise=True):
        variation = variation_value(variation_seed, variation_strength)
        return (LabNoiseObject(seed, noise_type, variation, add_noise),)


class LabNoiseObject:
    """The host's NOISE interface: `seed` (handed to the sampler; it carries
    the variation to our samplers) and generate_noise(latent)."""

    def __init__(self, seed, noise_type, variation, add_noise=True):
        self.seed = host.VariedSeed(seed, variation)
        self.noise_type, self.variation, self.add_noise = noise_type, variation, add_noise

    def generate_noise(self, input_latent):
        if not self.add_noise:
            samples = input_latent["samples"]
            return torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout,
                               device="cpu")
        return host.make_initial_noise(input_latent["samples"], int(self.seed),
                                       input_latent.get("batch_index"), self.noise_type,
                                       self.variation)
