"""The ComfyUI adapter: node classes (thin declarations) over the engine.
Only `host.py` and the other `host_*.py` read ComfyUI internals.

Set SAMPLER_LAB_IN_CORE=1 to also list our samplers (and, on hosts with a
scheduler registry, our schedules) in the core KSampler's dropdowns as
lab_<name>. Off by default; core names are never changed.
"""
import os
from .custom_sampling import (LabCustomSigmas, LabNoise, LabSampler, LabScheduler,
                              LabSigmasPreview)
from .ksampler import LabKSampler, LabKSamplerAdvanced
from .optimize import LabOptimizeSchedule
from .tune import LabTuneSampler

NODE_CLASS_MAPPINGS = {
    "SamplerLabKSampler": LabKSampler,
    "SamplerLabKSamplerAdvanced": LabKSamplerAdvanced,
    "SamplerLabSampler": LabSampler,
    "SamplerLabScheduler": LabScheduler,
    "SamplerLabCustomSigmas": LabCustomSigmas,
    "SamplerLabOptimizeSchedule": LabOptimizeSchedule,
    "SamplerLabSigmasPreview": LabSigmasPreview,
    "SamplerLabNoise": LabNoise,
    "SamplerLabTuneSampler": LabTuneSampler,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerLabKSampler": "Sampler Lab KSampler",
    "SamplerLabKSamplerAdvanced": "Sampler Lab KSampler (Advanced)",
    "SamplerLabSampler": "Sampler Lab Sampler",
    "SamplerLabScheduler": "Sampler Lab Scheduler",
    "SamplerLabCustomSigmas": "Sampler Lab Custom Sigmas",
    "SamplerLabOptimizeSchedule": "Sampler Lab Optimize Schedule",
    "SamplerLabSigmasPreview": "Sampler Lab Sigmas Preview",
    "SamplerLabNoise": "Sampler Lab Noise",
    "SamplerLabTuneSampler": "Sampler Lab Tune Sampler",
}


if os.environ.get("SAMPLER_LAB_IN_CORE", "").strip().lower() in ("1", "true", "yes", "on"):
    from . import host as _host
    from .widgets import KSAMPLER_SCHEDULES as _SCHEDULES
    from ..samplers import SAMPLER_NAMES as _SAMPLERS
    _host.expose_in_core(_SAMPLERS, _SCHEDULES)


# The schedule preview route, where a server is running (not in scripts/tests
# that import the nodes in-process).
try:
    from server import PromptServer as _PromptServer
except ImportError:  # pragma: no cover - no server module
    _PromptServer = None
if _PromptServer is not None and getattr(_PromptServer, "instance", None) is not None:
    from .routes import register as _register
    _register(_PromptServer.instance)
