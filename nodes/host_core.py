"""Opt-in (SAMPLER_LAB_IN_CORE=1): our samplers and schedules in the core
KSampler's dropdowns as lab_<name>. Core names are never changed.

Imported by host.py (which the nodes import first); the names stay
importable from host.
"""
import comfy.samplers

from ..samplers import get_sampler
from .host import (_inner_model_sampling, model_schedule, model_sigma_range, noise_scale_of,
                   process_of_model, run_sampler)

CORE_PREFIX = "lab_"


def _core_sampler_function(spec):
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        ms = _inner_model_sampling(model)
        return run_sampler(spec, model, x, sigmas, extra_args, callback, disable,
                           process_of_model(model), s_noise=noise_scale_of(ms), options=options,
                           model_range=model_sigma_range(ms))
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
