"""The ComfyUI adapter: node classes (thin declarations) over the engine.
Only `host.py` reads ComfyUI internals."""
from .custom_sampling import LabCustomSigmas, LabSampler, LabScheduler
from .ksampler import LabKSampler, LabKSamplerAdvanced

NODE_CLASS_MAPPINGS = {
    "SamplerLabKSampler": LabKSampler,
    "SamplerLabKSamplerAdvanced": LabKSamplerAdvanced,
    "SamplerLabSampler": LabSampler,
    "SamplerLabScheduler": LabScheduler,
    "SamplerLabCustomSigmas": LabCustomSigmas,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerLabKSampler": "Sampler Lab KSampler",
    "SamplerLabKSamplerAdvanced": "Sampler Lab KSampler (Advanced)",
    "SamplerLabSampler": "Sampler Lab Sampler",
    "SamplerLabScheduler": "Sampler Lab Scheduler",
    "SamplerLabCustomSigmas": "Sampler Lab Custom Sigmas",
}
