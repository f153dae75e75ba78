"""Two experts (Wan 2.2's high- and low-noise models, a base and a refiner)
in one run: the second model brought along when the host loads the first,
the boundary read off the model's own timestep map, and the two guiders
behind the engine's ExpertSwitch.

Imported by host.py (which the nodes import first); the names stay
importable from host.
"""
import comfy.model_management
import comfy.samplers

from ..samplers.experts import ExpertSwitch, boundary_sigma
from .host import _host_map, model_sampling, process_of


def with_expert(model, model_low):
    """A clone of `model` that brings model_low along when the host loads it
    for sampling (set_additional_models, where the host has it), so both
    experts are loaded together rather than one evicting the other."""
    setter = getattr(model, "set_additional_models", None)
    if setter is None or model_low is None:
        return model
    model = model.clone()
    setter("sampler_lab_model_low", [model_low])
    return model


def expert_boundary(ms, value, unit):
    """The boundary between two experts as a sigma of the model's sampling
    `ms` (unit "sigma", or "timestep": the timestep the model is called
    with, so 875 is Wan 2.2's text-to-video switch, sigma 0.875 on its flow
    model). The host's sigma(t) where it inverts the model's timestep(sigma)
    (discrete tables, interpolated); else (flow models, whose sigma(t) adds
    the shift while timestep(sigma) = 1000 sigma) timestep(sigma) inverted
    by bisection. ValueError naming `boundary`."""
    to_t = _host_map(ms.timestep)
    timestep_of = lambda s: float(to_t([s])[0])  # noqa: E731
    sig = boundary_sigma(value, unit, float(ms.sigma_min), float(ms.sigma_max), timestep_of)
    if unit == "timestep":
        direct = float(_host_map(ms.sigma)([float(value)])[0])
        if 0.0 < direct and abs(timestep_of(direct) - float(value)) <= 0.5 and \
                abs(timestep_of(sig) - float(value)) <= 0.5:
            return direct
    return sig


def two_experts(guider, experts, noise, latent_image, denoise_mask, seed):
    """The host's guider (high-noise expert) and a second guider over
    experts["model_low"] with the same conditioning (and cfg_low, -1: the
    same cfg), behind one engine ExpertSwitch at the boundary: the sampler
    runs once over both. Needs a host with CFGGuider (2024-04 or newer).
    Raises ValueError naming model_low for a model of another family (flow
    vs eps/v: their sigmas mean different things) and naming boundary for
    one outside the model's range."""
    guider_cls = getattr(comfy.samplers, "CFGGuider", None)
    if guider_cls is None or not isinstance(guider, guider_cls):
        raise ValueError("model_low (two experts) needs a ComfyUI whose sampling goes through "
                         "CFGGuider (April 2024 or newer); this one does not")
    low_patcher = experts["model_low"]
    ms_high = guider.inner_model.model_sampling
    ms_low = model_sampling(low_patcher)
    if process_of(ms_high) != process_of(ms_low):
        raise ValueError(f"model_low is a {process_of(ms_low)} model but model is "
                         f"{process_of(ms_high)}: both experts must be of one family (flow "
                         f"with flow, eps/v with eps/v)")
    boundary = expert_boundary(ms_high, experts.get("boundary", 875.0),
                               experts.get("boundary_unit", "timestep"))
    cfg_low = float(experts.get("cfg_low", -1.0))
    low = guider_cls(low_patcher)
    low.set_cfg(guider.cfg if cfg_low < 0 else cfg_low)
    if low_patcher not in getattr(guider, "loaded_models", []):
        comfy.model_management.load_models_gpu([low_patcher])
    pre_run = getattr(low_patcher, "pre_run", None)
    if pre_run is not None:  # the host's hooks read model.current_patcher
        pre_run()
    low.inner_model = low_patcher.model
    conds = {k: [c.copy() for c in v] for k, v in guider.original_conds.items()}
    device = noise.device
    low.conds = comfy.samplers.process_conds(low.inner_model, noise, conds, device, latent_image,
                                             denoise_mask, seed)
    return ExpertSwitch(guider, low, boundary)
