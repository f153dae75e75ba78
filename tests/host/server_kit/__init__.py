"""A custom node package for server tests only (never shipped): a real
ComfyUI model (BaseModel + ModelPatcher of the SD1.5 or SD3 family) around
the exact denoiser of Gaussian data N(0.1, 0.5^2), and its conditioning, so
a workflow runs end to end in a real server without checkpoint files.
Each call of the model appends one line to $SAMPLER_LAB_TEST_CALLS (when
set): the test counts model calls from outside the server. On hosts
without --base-directory (the March-2024 one keeps its user folder inside
the installed package) $SAMPLER_LAB_TEST_USER_DIR moves the user folder
into the test's own folder. While the file $SAMPLER_LAB_TEST_SLOW_FILE
exists each model call takes 50 ms more (a run long enough to cancel)."""
import os
import time

import torch

import comfy.model_base
import comfy.model_patcher
import comfy.model_sampling
import comfy.supported_models
import folder_paths

if os.environ.get("SAMPLER_LAB_TEST_USER_DIR"):
    folder_paths.user_directory = os.environ["SAMPLER_LAB_TEST_USER_DIR"]


class _Gaussian(torch.nn.Module):
    def __init__(self, ms, flow, mean=0.1, std=0.5):
        super().__init__()
        self.ms, self.flow, self.mean, self.std = ms, flow, mean, std
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, x, t, context=None, **kwargs):
        slow = os.environ.get("SAMPLER_LAB_TEST_SLOW_FILE")
        if slow and os.path.exists(slow):  # a slow model, to cancel a run midway
            time.sleep(0.05)
        log = os.environ.get("SAMPLER_LAB_TEST_CALLS")
        if log:
            with open(log, "a") as f:
                f.write(f"{x.shape[0]}\n")
        shape = (-1,) + (1,) * (x.ndim - 1)
        m, v = self.mean, self.std ** 2
        if self.flow:  # input (1 - s) x0 + s n; output v = n - x0
            s = (t / self.ms.multiplier).reshape(shape).to(x)
            a = 1 - s
            d = m + a * v / (a * a * v + s * s) * (x - a * m)
            return (x - a * d) / s - d
        s = self.ms.sigma(t).reshape(shape).to(x)
        xv = x * (1 + s * s).sqrt()  # eps models get x / sqrt(1 + sigma^2)
        d = m + v / (v + s * s) * (xv - m)
        return (xv - d) / s


class SamplerLabTestGaussian:
    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (["eps", "flow"],)}}

    def load(self, kind):
        cpu = torch.device("cpu")
        if kind == "flow":
            config = comfy.supported_models.SD3({"disable_unet_model_creation": True})
            base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.FLOW,
                                              device=cpu)
            c = torch.zeros(1, 1, 4096)
            extra = {"pooled_output": torch.zeros(1, 2048)}
        else:
            config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
            base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.EPS,
                                              device=cpu)
            c = torch.zeros(1, 1, 768)
            extra = {}
        base.diffusion_model = _Gaussian(base.model_sampling, kind == "flow")
        model = comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)
        return model, [[c, dict(extra)]], [[c.clone(), dict(extra)]]


NODE_CLASS_MAPPINGS = {"SamplerLabTestGaussian": SamplerLabTestGaussian}
