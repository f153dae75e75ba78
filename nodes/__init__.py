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

# Each node once: (id, class, display name). The ids are what saved workflows
# and API prompts refer to: never rename or remove one.
NODES = [
    ("SamplerLabKSampler", LabKSampler, "Sampler Lab KSampler"),
    ("SamplerLabKSamplerAdvanced", LabKSamplerAdvanced, "Sampler Lab KSampler (Advanced)"),
    ("SamplerLabSampler", LabSampler, "Sampler Lab Sampler"),
    ("SamplerLabScheduler", LabScheduler, "Sampler Lab Scheduler"),
    ("SamplerLabCustomSigmas", LabCustomSigmas, "Sampler Lab Custom Sigmas"),
    ("SamplerLabOptimizeSchedule", LabOptimizeSchedule, "Sampler Lab Optimize Schedule"),
    ("SamplerLabSigmasPreview", LabSigmasPreview, "Sampler Lab Sigmas Preview"),
    ("SamplerLabNoise", LabNoise, "Sampler Lab Noise"),
    ("SamplerLabTuneSampler", LabTuneSampler, "Sampler Lab Tune Sampler"),
]
NODE_CLASS_MAPPINGS = {node_id: cls for node_id, cls, _ in NODES}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: display for node_id, _, display in NODES}


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
