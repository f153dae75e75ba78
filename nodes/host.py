"""Everything that touches ComfyUI's internals, in one file.

Features are detected by presence, never by version number: the March-2024
host (no flow models, no scheduler registry, `ModelPatcher` without
`get_model_object`) and the newest one (CONST flow sampling, async node
loading) both work through the same functions.
"""
import numpy as np
import torch

import comfy.model_sampling as _model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..samplers import BrownianNoise, get_sampler
from ..schedules import get_sigmas, ksampler_sigmas
from ..schedules.sampling import (DiscreteSampling, FlowSampling, FluxSampling,
                                  MappedSampling)

# Flow models (SD3, Flux) arrived after March 2024; absent classes are None.
_CONST = getattr(_model_sampling, "CONST", None)
_DISCRETE = getattr(_model_sampling, "ModelSamplingDiscrete", None)
_FLOW = getattr(_model_sampling, "ModelSamplingDiscreteFlow", None)
_FLUX = getattr(_model_sampling, "ModelSamplingFlux", None)


def model_sampling(model):
    """The model's sampling object (sigma table, sigma_min/max, kind)."""
    getter = getattr(model, "get_model_object", None)
    if getter is not None:
        try:
            return getter("model_sampling")
        except (AttributeError, KeyError):
            pass
    return model.model.model_sampling


def process_of(ms):
    """"flow" for the host's CONST sampling (x = (1 - s) x0 + s n), else "ve"."""
    return "flow" if _CONST is not None and isinstance(ms, _CONST) else "ve"


def _uses(ms, cls):
    """Whether `ms` maps sigma <-> timestep with `cls`'s own functions (a
    subclass that overrides either has other maps)."""
    return (cls is not None and isinstance(ms, cls) and type(ms).sigma is cls.sigma
            and type(ms).timestep is cls.timestep)


def _host_map(fn):
    """A host map as a float64 numpy function; maps written for one value at
    a time (e.g. Cosmos' sigma) are applied value by value."""
    def one(value):
        return float(fn(torch.tensor(float(value), dtype=torch.float32)))

    def apply(values):
        values = np.asarray(values, dtype=np.float64)
        with torch.no_grad():
            try:
                out = fn(torch.as_tensor(values, dtype=torch.float32))
                return torch.as_tensor(out).double().cpu().numpy().reshape(values.shape)
            except (RuntimeError, TypeError, ValueError):
                return np.vectorize(one, otypes=[np.float64])(values)
    return apply


def sampling_of(ms):
    """The host's model_sampling as the plain description schedules read
    (schedules.sampling): its table, range and sigma <-> timestep maps.
    Known classes become formulas with their parameters (discrete table,
    flow shift and multiplier, Flux shift); any other keeps the host's own
    maps as functions."""
    table = ms.sigmas.detach().to("cpu", torch.float64).numpy()
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    if _uses(ms, _FLOW):
        return FlowSampling(sigmas=table, sigma_min=lo, sigma_max=hi, shift=float(ms.shift),
                            multiplier=float(ms.multiplier))
    if _uses(ms, _FLUX):
        return FluxSampling(sigmas=table, sigma_min=lo, sigma_max=hi, shift=float(ms.shift))
    if _uses(ms, _DISCRETE):
        logs = getattr(ms, "log_sigmas", None)
        logs = None if logs is None else logs.detach().to("cpu", torch.float64).numpy()
        return DiscreteSampling(sigmas=table, sigma_min=lo, sigma_max=hi, log_sigmas=logs)
    return MappedSampling(sigmas=table, sigma_min=lo, sigma_max=hi,
                          to_timestep=_host_map(ms.timestep), to_sigma=_host_map(ms.sigma))


def model_schedule(ms, scheduler, steps, **params):
    """Our `scheduler` for `steps` steps over the host's model_sampling `ms`:
    its range, table and sigma <-> timestep maps (see get_sigmas)."""
    return get_sigmas(scheduler, steps, model_sampling=sampling_of(ms), **params)


def schedule(model, scheduler, steps, denoise=1.0, discard_penultimate=False, **params):
    """Sigmas for a KSampler-style node, with the core's semantics (see
    schedules.ksampler_sigmas): denoise < 1 computes int(steps / denoise)
    steps and keeps the last steps + 1 sigmas; samplers the core runs with
    one sigma less at the end (dpm_2, uni_pc) get the same treatment."""
    return ksampler_sigmas(scheduler, steps, denoise, discard_penultimate=discard_penultimate,
                           model_sampling=sampling_of(model_sampling(model)), **params)


class LabKSAMPLER(comfy.samplers.KSAMPLER):
    """The host's KSAMPLER running one of our samplers. The process and a
    seeded Brownian noise source are decided at sample time from the model
    actually being sampled."""

    def __init__(self, name, eta=None, s_noise=1.0, options=None):
        self.spec = get_sampler(name)
        self.eta = eta
        self.s_noise = s_noise
        self.options = dict(options or {})
        super().__init__(self._run, extra_options={}, inpaint_options={})

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        self.process = process_of(model_wrap.inner_model.model_sampling)
        return super().sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)

    def _run(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        return run_sampler(self.spec, model, x, sigmas, extra_args, callback, disable,
                           self.process, self.eta, self.s_noise, self.options)


def run_sampler(spec, model, x, sigmas, extra_args, callback, disable, process, eta=None,
                s_noise=1.0, options=None):
    """One of our samplers as the host calls a k-diffusion sampler, with a
    seeded Brownian noise source when it will add noise."""
    eta = spec.default_eta if eta is None else eta
    noise = None
    if eta > 0 and len(sigmas) > 1:
        # Indexed by sigma, seeded by the sampling seed: reproducible, and the
        # same path at any step count (as the host does for its SDE samplers).
        positive = sigmas[sigmas > 0]
        seed = (extra_args or {}).get("seed")
        if seed is None:
            seed = int(torch.randint(0, 2 ** 63 - 1, []).item())
        if positive.numel() and float(positive.min()) < float(sigmas.max()):
            noise = BrownianNoise(x, float(positive.min()), float(sigmas.max()), seed)
    return spec.fn(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                   process=process, eta=eta, s_noise=s_noise, noise=noise, **(options or {}))


def fix_latent(model, latent):
    fix = getattr(comfy.sample, "fix_empty_latent_channels", None)
    return fix(model, latent) if fix is not None else latent


def sample(model, seed, cfg, sampler, sigmas, positive, negative, latent, add_noise=True):
    """One sampling run through the host's own pipeline (conditioning, CFG,
    noise mask, preview, progress bar, interruption)."""
    samples = fix_latent(model, latent["samples"])
    out = latent.copy()
    if len(sigmas) <= 1:
        out["samples"] = samples
        return out
    if add_noise:
        noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    else:
        noise = torch.zeros(samples.size(), dtype=samples.dtype, layout=samples.layout,
                            device="cpu")
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
    out["samples"] = comfy.sample.sample_custom(
        model, noise, cfg, sampler, sigmas, positive, negative, samples,
        noise_mask=latent.get("noise_mask"), callback=callback,
        disable_pbar=disable_pbar, seed=seed)
    return out


def core_discards_penultimate(name):
    """Whether the core KSampler runs `name` with its penultimate sigma dropped."""
    core = getattr(comfy.samplers.KSampler, "DISCARD_PENULTIMATE_SIGMA_SAMPLERS", set())
    return name in core


# --- opt-in: our samplers and schedules in the core dropdowns -----------------
CORE_PREFIX = "lab_"


def _inner_model_sampling(model_k):
    """KSamplerX0Inpaint -> CFG wrapper -> BaseModel: its model_sampling."""
    m = model_k
    for _ in range(4):
        if hasattr(m, "model_sampling"):
            return m.model_sampling
        m = getattr(m, "inner_model", None)
    return None


def _core_sampler_function(spec):
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        process = process_of(_inner_model_sampling(model))
        return run_sampler(spec, model, x, sigmas, extra_args, callback, disable, process,
                           options=options)
    sample.__name__ = f"sample_{CORE_PREFIX}{spec.name}"
    return sample


def expose_in_core(sampler_names, schedule_names):
    """Adds `lab_<name>` entries to the core KSampler's sampler list (the
    host's ksampler() looks samplers up as k_diffusion.sampling.sample_<name>)
    and, where the host has a scheduler registry, to its schedulers. Existing
    names are never touched; calling twice adds nothing twice. Returns the
    names added."""
    import comfy.k_diffusion.sampling as kds

    added = []
    lists = [comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES,
             comfy.samplers.KSampler.SAMPLERS]
    for name in sampler_names:
        core_name = CORE_PREFIX + name
        setattr(kds, f"sample_{core_name}", _core_sampler_function(get_sampler(name)))
        _append_once(lists, core_name)
        added.append(core_name)
    handlers = getattr(comfy.samplers, "SCHEDULER_HANDLERS", None)
    handler_cls = getattr(comfy.samplers, "SchedulerHandler", None)
    if handlers is not None and handler_cls is not None:
        for name in schedule_names:
            core_name = CORE_PREFIX + name

            def handler(ms, steps, _name=name):
                return model_schedule(ms, _name, steps)
            handlers[core_name] = handler_cls(handler, use_ms=True)
            _append_once([comfy.samplers.SCHEDULER_NAMES, comfy.samplers.KSampler.SCHEDULERS],
                         core_name)
            added.append(core_name)
    return added


def _append_once(lists, name):
    """Append `name` to each list once; the host's lists may be one object."""
    for names in {id(lst): lst for lst in lists}.values():
        if name not in names:
            names.append(name)
