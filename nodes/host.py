"""Everything that touches ComfyUI's internals, in one file.

Features are detected by presence, never by version number: the March-2024
host (no flow models, no scheduler registry, `ModelPatcher` without
`get_model_object`) and the newest one (CONST flow sampling, async node
loading) both work through the same functions.
"""
import importlib.util

import numpy as np
import torch

import comfy.model_sampling as _model_sampling
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..samplers import BrownianNoise, get_process, get_sampler
from ..samplers.noise_types import (FRESH_NOISE_TYPES, MixedNoise, TypedNoise, check_type,
                                    initial_noise, slerp)
from ..samplers.controls import parse_restart, restart_pieces
from .widgets import check_combination
from ..schedules import get_sigmas, ksampler_sigmas
from ..schedules.sampling import (DiscreteSampling, FlowSampling, FluxSampling,
                                  MappedSampling)

# Flow models (SD3, Flux) arrived after March 2024; absent classes are None.
_CONST = getattr(_model_sampling, "CONST", None)
_DISCRETE = getattr(_model_sampling, "ModelSamplingDiscrete", None)
_FLOW = getattr(_model_sampling, "ModelSamplingDiscreteFlow", None)
_FLUX = getattr(_model_sampling, "ModelSamplingFlux", None)


# The host's validation range-checks every declared input (optional ones
# too) and checks combo lists, except the inputs VALIDATE_INPUTS takes, and
# reports a VALIDATE_INPUTS failure once per input the function takes. Hosts
# with the comfy_execution package (from August 2024) do so; the March-2024
# one checks only required inputs.
HOST_CHECKS_OPTIONAL_INPUTS = importlib.util.find_spec("comfy_execution") is not None


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


def model_process(ms):
    """The engine's process for the host's model_sampling `ms`: VE or flow,
    with the model's own percent <-> sigma map (noise windows) and, for flow,
    the alpha that stands for sigma = 1 in lambda: the host's SNR-based
    samplers read sigma = 1 as percent_to_sigma(1e-4), so ours do too."""
    kind = process_of(ms)
    percent = getattr(ms, "percent_to_sigma", None)
    to_sigma = None if percent is None else (lambda p: float(percent(p)))
    floor = None
    if kind == "flow" and percent is not None:
        one = float(percent(1e-4))
        floor = 1.0 - one if 0.0 < one < 1.0 else None
    return get_process(kind).derive(percent_to_sigma=to_sigma, alpha_floor=floor)


class _UncondCapture:
    """The unconditional prediction of each model call, from the host's
    post-CFG hook (both hosts call model_options["sampler_post_cfg_function"];
    disable_cfg1_optimization makes them compute it at cfg 1 as well)."""

    def __init__(self, extra_args):
        self.value = None
        options = dict(extra_args.get("model_options", {}))
        options["sampler_post_cfg_function"] = \
            list(options.get("sampler_post_cfg_function", [])) + [self._hook]
        options["disable_cfg1_optimization"] = True
        self.extra_args = {**extra_args, "model_options": options}

    def _hook(self, args):
        self.value = args["uncond_denoised"]
        return args["denoised"]

    def __call__(self):
        if self.value is None:
            raise ValueError("this host's CFG gave no unconditional prediction to the CFG++ "
                             "sampler (no post-CFG hook ran)")
        return self.value


class LabKSAMPLER(comfy.samplers.KSAMPLER):
    """The host's KSAMPLER running one of our samplers. The process and a
    seeded Brownian noise source are decided at sample time from the model
    actually being sampled. controls: the engine's s_churn, s_tmin, s_tmax,
    restart and detail (samplers/controls.py)."""

    def __init__(self, name, eta=None, s_noise=1.0, options=None, noise_window=None,
                 controls=None, experts=None, fresh_noise="brownian", variation=None):
        self.spec = get_sampler(name)
        # two experts: {"model_low", "boundary", "boundary_unit", "cfg_low"}
        self.experts = experts
        self.fresh_noise = check_type(fresh_noise, FRESH_NOISE_TYPES, "fresh_noise")
        self.variation = check_variation(variation)
        self.eta = eta
        self.s_noise = s_noise
        self.options = dict(options or {})
        self.noise_window = noise_window
        self.controls = dict(controls or {})
        self.controls["restart"] = parse_restart(self.controls.get("restart"))
        check_combination(name, eta, self.spec.default_eta, self.controls)
        super().__init__(self._run, extra_options={}, inpaint_options={})

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        ms = model_wrap.inner_model.model_sampling
        self.process = model_process(ms)
        self.noise_scale = noise_scale_of(ms)
        self.model_range = model_sigma_range(ms)
        self._check_sigmas(sigmas)
        if self.experts is not None and self.experts.get("model_low") is not None:
            latent_image = args[0] if args else kwargs.get("latent_image")
            denoise_mask = args[1] if len(args) > 1 else kwargs.get("denoise_mask")
            model_wrap = two_experts(model_wrap, self.experts, noise, latent_image,
                                     denoise_mask, (extra_args or {}).get("seed"))
        if self.process.name == "flow" and len(sigmas) > 1 and \
                float(sigmas[-1]) > float(sigmas[0]) and float(sigmas[-1]) >= 1.0:
            # The host hands the latent on as x / (1 - sigma) (inverse_noise_scaling).
            raise ValueError("unsampling a flow model must end below sigma 1: the host stores "
                             "the latent as x / (1 - sigma), infinite at 1 (use denoise < 1 or "
                             "drop the schedule's first sigma before FlipSigmas)")
        if callback is not None and self.controls["restart"]:
            # restart steps come on top of the schedule's: the progress bar counts them
            total = self.total_steps(sigmas)
            host_callback = callback

            def callback(step, x0, x, _total):
                return host_callback(step, x0, x, total)
        return super().sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)

    def _check_sigmas(self, sigmas):
        """What only the model tells: its sigma range. Checked before the
        first model call, naming the input."""
        if len(sigmas) and float(sigmas.max()) > self.process.sigma_limit:
            raise ValueError(
                f"sigmas: {float(sigmas.max()):g} is above a {self.process.name} model's range "
                f"[0, {self.process.sigma_limit:g}]: these sigmas were made for another model "
                f"(an eps/v model's reach ~14.6); build them from this model (Sampler Lab "
                f"Scheduler or BasicScheduler with this model)")

    def total_steps(self, sigmas):
        """Steps of a run over `sigmas`, restarts included."""
        sig = [float(s) for s in sigmas]
        if len(sig) <= 1 or not self.controls["restart"] or sig[-1] > sig[0]:
            return len(sig) - 1
        return sum(len(p.sig) - 1 for p in restart_pieces(sig, self.controls["restart"],
                                                          self.process))

    def _run(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        return run_sampler(self.spec, model, x, sigmas, extra_args, callback, disable,
                           self.process, self.eta, self.s_noise * self.noise_scale,
                           self.options, self.noise_window, self.controls,
                           model_range=self.model_range, fresh_noise=self.fresh_noise,
                           variation=self.variation)


def noise_scale_of(ms):
    """The model's noise scale: the newer cores' ModelNoiseScale node sets a
    `noise_scale` on the model's sampling object (e.g. 8.0 for HiDream-O1)
    and their samplers multiply it into the fresh noise of every stochastic
    step (the initial noise the host scales itself, in its noise_scaling).
    Detected by presence: 1.0 where the attribute is absent (older hosts).
    Raises ValueError for a value that is not a finite number > 0."""
    value = getattr(ms, "noise_scale", None)
    if value is None:
        return 1.0
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (v > 0.0 and v < float("inf")):
        raise ValueError(f"the model's noise_scale (ModelNoiseScale) must be a finite number "
                         f"> 0, got {value!r}")
    return v


def latent_pixels(model, latent):
    """(width, height) in image pixels of a LATENT dict, for the schedules
    that depend on the image size (flux2, ideogram4): the latent's last two
    dimensions times the model's spatial compression, read from its latent
    format where the host declares it (spacial_downscale_ratio), else 16 for
    128-channel latents (FLUX.2's packed 2x2 patches of its /8 VAE) and 8
    otherwise (SD, SDXL, SD3, Flux.1)."""
    samples = latent["samples"]
    inner = getattr(model, "model", None)
    fmt = getattr(inner, "latent_format", None)
    ratio = getattr(fmt, "spacial_downscale_ratio", None)
    if not isinstance(ratio, (int, float)) or ratio <= 0:
        ratio = 16 if samples.ndim >= 4 and samples.shape[1] == 128 else 8
    return int(samples.shape[-1] * ratio), int(samples.shape[-2] * ratio)


def model_sigma_range(ms):
    """(sigma_min, sigma_max) of the host's model_sampling `ms`, or None."""
    try:
        lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    except (AttributeError, TypeError, ValueError):
        return None
    return (lo, hi) if 0.0 < lo < hi else None


def noise_path_range(sigmas, model_range=None):
    """The sigma interval the run's Brownian path spans: the model's whole
    range (sigma_min .. sigma_max), widened where the schedule leaves it.
    Indexing by the model's absolute sigma, not by the piece's first and
    last, is what makes a split run (KSampler (Advanced) 0-10 then 10-20,
    SplitSigmas) draw exactly the increments of the unsplit run: the path
    and the intervals asked of it are the same. None where no positive
    interval exists."""
    positive = sigmas[sigmas > 0]
    if not positive.numel():
        return None
    lo, hi = float(positive.min()), float(sigmas.max())
    if model_range is not None:
        lo, hi = min(lo, model_range[0]), max(hi, model_range[1])
    return (lo, hi) if lo < hi else None


def check_variation(variation):
    """(variation_seed, variation_strength) or None; strength in [0, 1]."""
    if variation is None:
        return None
    seed, strength = variation
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"variation_strength must be in [0, 1] (0: the seed's image, 1: the "
                         f"variation seed's), got {strength}")
    return (int(seed), strength) if strength > 0.0 else None


class VariedSeed(int):
    """The seed a Sampler Lab Noise node hands SamplerCustomAdvanced: an int
    (the host and its samplers use it as the seed) that also carries the
    node's variation, so our samplers' fresh noise follows it too."""

    def __new__(cls, seed, variation=None):
        obj = super().__new__(cls, int(seed))
        obj.variation = check_variation(variation)
        return obj


# The core's samplers that draw from its Brownian tree over the schedule's
# own first and last sigma (k_diffusion/sampling.py); the other stochastic
# ones draw per step from a torch generator seeded with the seed on the
# latent's device (default_noise_sampler).
CORE_BROWNIAN = frozenset({"dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
                           "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde",
                           "dpmpp_3m_sde_gpu"})


def _core_seeds_default_noise():
    """Whether the host's default_noise_sampler takes the seed (newer hosts);
    the March-2024 one draws from torch's global generator, which the host's
    prepare_noise has just seeded."""
    import inspect

    import comfy.k_diffusion.sampling as kds
    try:
        return "seed" in inspect.signature(kds.default_noise_sampler).parameters
    except (AttributeError, TypeError, ValueError):
        return False


# The core's samplers that split ancestral steps on flow models by its RF
# rule (noise_rules.rf_core) rather than by the process's SNR.
CORE_RF_SPLIT = frozenset({"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"})


class CoreDefaultNoise:
    """The core's default noise for its ancestral, DDPM, LCM, ER-SDE, SEEDS
    and SA-Solver samplers: one randn per call from a generator on the
    latent's device seeded with the seed (device-dependent, as the core), or
    on hosts whose sampler takes no seed, from torch's global generator."""

    def __init__(self, x, seed):
        self.x = x
        self.generator = None
        if _core_seeds_default_noise():
            self.generator = torch.Generator(device=x.device).manual_seed(int(seed))

    def __call__(self, sigma, sigma_next):
        x = self.x
        if self.generator is None:
            return torch.randn_like(x)
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device,
                           generator=self.generator)


def fresh_noise_source(kind, name, x, sigmas, seed, model_range=None):
    """The noise source of fresh noise type `kind` for sampler `name`."""
    if kind == "core":
        if name in CORE_BROWNIAN:
            positive = sigmas[sigmas > 0]
            if not positive.numel() or float(positive.min()) >= float(sigmas.max()):
                return None
            # the core builds its _gpu names' tree on the latent's device
            return BrownianNoise(x, float(positive.min()), float(sigmas.max()), seed,
                                 cpu=not name.endswith("_gpu"), fine_span=1e-6)
        return CoreDefaultNoise(x, seed)
    if kind == "brownian":
        # Indexed by the model's absolute sigma, seeded by the sampling seed:
        # reproducible, the same path at any step count, and a split run
        # draws what the unsplit one draws.
        span = noise_path_range(sigmas, model_range)
        return None if span is None else BrownianNoise(x, span[0], span[1], seed)
    return TypedNoise(x, kind, seed)


def run_sampler(spec, model, x, sigmas, extra_args, callback, disable, process, eta=None,
                s_noise=1.0, options=None, noise_window=None, controls=None, model_range=None,
                fresh_noise="brownian", variation=None):
    """One of our samplers as the host calls a k-diffusion sampler, with a
    seeded Brownian noise source when it will add noise (its eta, churn or
    restarts), and the unconditional prediction for CFG++ samplers.
    model_range: the model's (sigma_min, sigma_max), the span of the noise
    path (noise_path_range)."""
    eta = spec.eta_or_default(eta)
    controls = controls or {}
    extra = dict(controls)
    if spec.cfg_pp:
        capture = _UncondCapture(extra_args or {})
        extra_args, extra["uncond"] = capture.extra_args, capture
    if noise_window is not None:
        extra["noise_window"] = noise_window
    noise = None
    draws = eta > 0 or controls.get("s_churn", 0.0) > 0 or bool(controls.get("restart"))
    if draws and len(sigmas) > 1:
        seed = (extra_args or {}).get("seed")
        if seed is None:
            seed = int(torch.randint(0, 2 ** 63 - 1, []).item())
        if variation is None:  # a Sampler Lab Noise node's seed carries its variation
            variation = getattr(seed, "variation", None)
        if variation is not None and variation[1] >= 1.0:
            noise = fresh_noise_source(fresh_noise, spec.name, x, sigmas, variation[0],
                                       model_range)
        else:
            noise = fresh_noise_source(fresh_noise, spec.name, x, sigmas, int(seed), model_range)
            if variation is not None and noise is not None:
                noise = MixedNoise(noise, fresh_noise_source(
                    fresh_noise, spec.name, x, sigmas, variation[0], model_range), variation[1])
    if fresh_noise == "core" and process.name == "flow" and spec.name in CORE_RF_SPLIT:
        extra["noise_rule"] = "rf_core"  # the core's own split there, for its image
    return spec.fn(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                   process=process, eta=eta, s_noise=s_noise, noise=noise, **extra,
                   **(options or {}))


def fix_latent(model, latent):
    fix = getattr(comfy.sample, "fix_empty_latent_channels", None)
    return fix(model, latent) if fix is not None else latent


def make_initial_noise(samples, seed, batch_index=None, noise_type="gaussian", variation=None):
    """The initial noise for `samples` (CPU, their dtype): "gaussian" is the
    core's prepare_noise (its image), the other types samplers/noise_types.py
    drawn on the CPU; with a variation (seed, strength), the spherical
    interpolation toward the variation seed's noise (strength 0: the seed's
    noise bit for bit, 1: the variation seed's)."""
    def one(s):
        if noise_type == "gaussian":
            return comfy.sample.prepare_noise(samples, s, batch_index)
        shape = list(samples.shape)
        if batch_index is None:
            return initial_noise(noise_type, shape, s).to(samples.dtype)
        inds = [int(i) for i in batch_index]
        full = initial_noise(noise_type, [max(inds) + 1] + shape[1:], s)
        return full[inds].to(samples.dtype)
    variation = check_variation(variation)
    if variation is None:
        return one(seed)
    if variation[1] >= 1.0:
        return one(variation[0])
    return slerp(one(seed), one(variation[0]), variation[1])


def sample(model, seed, cfg, sampler, sigmas, positive, negative, latent, add_noise=True,
           noise_type="gaussian", variation=None):
    """One sampling run through the host's own pipeline (conditioning, CFG,
    noise mask, preview, progress bar, interruption)."""
    samples = fix_latent(model, latent["samples"])
    out = latent.copy()
    if len(sigmas) <= 1:
        out["samples"] = samples
        return out
    if add_noise:
        noise = make_initial_noise(samples, seed, latent.get("batch_index"), noise_type,
                                   variation)
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


def _inner_model_sampling(model_k):
    """KSamplerX0Inpaint -> CFG wrapper -> BaseModel: its model_sampling."""
    m = model_k
    for _ in range(4):
        if hasattr(m, "model_sampling"):
            return m.model_sampling
        m = getattr(m, "inner_model", None)
    return None


def process_of_model(model_k):
    """The engine's process of the model a sampler function is handed (the
    host's KSamplerX0Inpaint over its CFG wrapper over the BaseModel), read
    from the model at each call rather than kept on the sampler."""
    return model_process(_inner_model_sampling(model_k))


class SearchKSAMPLER(comfy.samplers.KSAMPLER):
    """Runs a schedule search where the host would run a sampler: the model
    it is handed is the CFG-wrapped denoiser, the x it is handed the seed's
    noised latent at sigma_max. `search` is schedules.optimize (passed in, so
    the adapter does not import the search); its result lands in .result."""

    def __init__(self, search, sampler_name, steps, budget_calls, seed, sigma_min, sigma_max,
                 starts):
        self.search = search
        self.settings = dict(sampler_name=sampler_name, steps=steps, budget_calls=budget_calls,
                             seed=seed, sigma_min=sigma_min, sigma_max=sigma_max,
                             starts=starts, model_sigma_range=(sigma_min, sigma_max))
        self.result = None
        super().__init__(self._search, extra_options={}, inpaint_options={})

    def _search(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = self.settings
        process = process_of_model(model)
        pbar = comfy.utils.ProgressBar(s["budget_calls"])
        self.result = self.search(
            model, tuple(x.shape), s["sampler_name"], s["steps"], process=process,
            sigma_min=s["sigma_min"], sigma_max=s["sigma_max"],
            budget_calls=s["budget_calls"], seed=s["seed"], x=x, extra_args=extra_args,
            starts=s["starts"], model_sigma_range=s["model_sigma_range"],
            # A discrete (VE) model is fed timestep 0 below its sigma_min, so its
            # reference stops there; flow models are continuous in sigma.
            reference_floor=s["sigma_min"] if process.name == "ve" else None,
            dtype=x.dtype, device=x.device,
            progress=lambda done, total: pbar.update_absolute(done, total))
        return x


# Two experts, the opt-in core dropdowns and the preview's model families live
# beside this file (host_experts.py, host_core.py, host_models.py); their
# names stay importable from here (LabKSAMPLER.sample calls two_experts).
from .host_core import CORE_PREFIX, _core_sampler_function, expose_in_core  # noqa: E402,F401
from .host_experts import expert_boundary, two_experts, with_expert  # noqa: E402,F401
from .host_models import (_header_model, checkpoint_family, model_family,  # noqa: E402,F401
                          model_file, sampling_family, sampling_node_family)
