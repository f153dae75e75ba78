"""The host's own sampler functions on exact Gaussian models, for the parity
and accuracy tests: model samplings built from the host's classes, the
wrapper its k-diffusion functions expect, and a replayed noise source."""
import inspect

import torch

from sampler_lab.bench.models import GaussianData

# The host's samplers that take an eta; at eta = 0 they are deterministic.
def host_takes(fn, name):
    return name in inspect.signature(fn).parameters


def model_sampling(comfy, kind, shift=3.0):
    """An EPS model on the SD 1.x table, or a CONST flow model with `shift`
    (None where the host has no flow models)."""
    ms_mod = comfy.model_sampling
    if kind == "flow":
        flow_cls = getattr(ms_mod, "ModelSamplingDiscreteFlow", None)
        if flow_cls is None or not hasattr(ms_mod, "CONST"):
            return None

        class MS(flow_cls, ms_mod.CONST):
            pass

        class Cfg:
            sampling_settings = {"shift": shift, "multiplier": 1000}
        return MS(Cfg())

    class MS(ms_mod.ModelSamplingDiscrete, ms_mod.EPS):
        pass
    return MS(None)


class HostModel:
    """model(x, sigma, **extra_args) -> denoised with the attributes the
    host's k-diffusion functions read (inner_model.model_patcher /
    inner_model.inner_model.model_sampling); calls post-CFG hooks with a
    guided/unconditional pair when `uncond_fn` is given (CFG++)."""

    def __init__(self, fn, ms, uncond_fn=None, w=1.5):
        self.fn, self.uncond_fn, self.w = fn, uncond_fn, w
        self.calls, self.last_uncond = 0, None
        patcher = type("P", (), {"get_model_object": lambda self, k: ms})()
        inner = type("II", (), {"model_sampling": ms})()
        self.inner_model = type("I", (), {"model_patcher": patcher, "inner_model": inner,
                                          "model_sampling": ms})()

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        if self.uncond_fn is None:
            return self.fn(x, sigma)
        c, u = self.fn(x, sigma), self.uncond_fn(x, sigma)
        g = u + self.w * (c - u)
        for hook in kw.get("model_options", {}).get("sampler_post_cfg_function", []):
            g = hook({"denoised": g, "uncond_denoised": u, "cond_denoised": c})
        self.last_uncond = u
        return g


class Replay:
    """The k-th draw is the k-th tensor of a seeded stream (both sides see the
    same draws as long as they draw in the same order)."""

    def __init__(self, x, seed):
        self.gen = torch.Generator().manual_seed(seed)
        self.shape, self.dtype = x.shape, x.dtype

    def __call__(self, sigma, sigma_next):
        return torch.randn(self.shape, generator=self.gen, dtype=self.dtype)


def gaussian(kind, mean=0.1, std=0.5):
    return GaussianData(mean, std, "flow" if kind == "flow" else "ve")


def start(sigmas, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 4, 4, generator=g, dtype=torch.float64) * float(sigmas[0])
