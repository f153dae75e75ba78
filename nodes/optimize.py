"""Sampler Lab Optimize Schedule: a schedule searched for the user's model,
conditioning and sampler (schedules.optimize), cached on disk.

The search runs inside the host's sampling pipeline, so the model sees the
conditioning, CFG and device placement exactly as a KSampler would give it;
the host's progress bar shows the calls spent and its interrupt stops it.
"""
import torch

from ..samplers import SAMPLER_NAMES
from ..schedules import optimize
from ..schedules.optimize import UNTUNABLE, fixed_starts, search_cost_floor
from . import host, host_cache
from .host_cache import conditioning_fingerprint, model_fingerprint  # noqa: F401  (API)
from .ksampler import CATEGORY, MAX_SEED, with_sigmas

TUNABLE = [n for n in SAMPLER_NAMES if n not in UNTUNABLE]
CACHE_VERSION = 1  # bump when the search changes what it returns


def _read_cache(path):
    entry = host_cache.read_entry(path)
    try:
        sigmas = torch.tensor(entry["sigmas"], dtype=torch.float32)
    except (ValueError, KeyError, TypeError):
        return None  # absent or damaged: search again
    if sigmas.ndim != 1 or len(sigmas) < 2 or not bool(torch.isfinite(sigmas).all()):
        return None
    return sigmas, entry


def _outcome(entry, cached):
    """What the node shows of a search: cached or new, calls spent, the
    error of the best fixed schedule and of the result."""
    def number(key):
        value = entry.get(key)
        return float(value) if isinstance(value, (int, float)) else None
    calls = entry.get("calls")
    return {"cached": bool(cached), "calls": int(calls) if isinstance(calls, int) else None,
            "budget_calls": int(entry.get("key", {}).get("budget_calls", 0)) or None,
            "error_before": number("error_before"), "error_after": number("error_after"),
            "start": str(entry.get("start", "")), "summary": str(entry.get("summary", ""))}


def _output(sigmas, summary, model=None, outcome=None):
    out = with_sigmas((sigmas,), sigmas, model)
    out["ui"]["sampler_lab_summary"] = [summary]
    if outcome is not None:
        out["ui"]["sampler_lab_outcome"] = [outcome]
    return out


class LabOptimizeSchedule:
    DESCRIPTION = ("Searches a schedule of `steps` sigmas for this model, conditioning and "
                   "sampler that minimises the sampler's error against a fine reference "
                   "solve from the seed's noise. The search spends up to budget_calls model "
                   "calls once; the result is cached on disk in ComfyUI's user folder.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("The optimized schedule (steps + 1 sigmas ending in 0): connect it to "
                       "SamplerCustom with the same sampler.",)
    FUNCTION = "optimize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to tune the schedule for."}),
            "positive": ("CONDITIONING", {"tooltip": "A typical prompt for this model."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
            "latent_image": ("LATENT", {"tooltip": "Sets the shape; its batch is the "
                                        "calibration batch (2-4 images tune more robustly "
                                        "than 1, at the same number of calls)."}),
            "sampler_name": (TUNABLE, {"default": "dpmpp_2m", "tooltip":
                                       "The sampler the schedule will be used with "
                                       "(stochastic ones are tuned by their eta = 0 form)."}),
            "steps": ("INT", {"default": 8, "min": 1, "max": 100,
                              "tooltip": "Steps of the schedule to find."}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                              "round": 0.01, "tooltip": "The CFG you will sample with."}),
            # Not named "seed": the frontend gives seed widgets a randomize-after-run
            # control, which would defeat both the cache and reproducibility.
            "calibration_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                         "tooltip": "Seed of the calibration noise; the same "
                                                    "seed gives the same schedule."}),
            "budget_calls": ("INT", {"default": 600, "min": 10, "max": 100000, "tooltip":
                                     "Most model calls the search may spend (each on the "
                                     "whole calibration batch): the reference takes 192, scoring "
                                     "the fixed schedules one run each, the rest searches."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, sampler_name=None, steps=None, budget_calls=None):
        if sampler_name is None or steps is None or budget_calls is None:
            return True  # linked inputs: checked when the node runs
        if sampler_name not in TUNABLE:
            return f"sampler_name {sampler_name!r} cannot be tuned; pick one of {TUNABLE}"
        floor = search_cost_floor(sampler_name, steps)
        if budget_calls < floor:
            return (f"budget_calls = {budget_calls} is too small for {steps} steps of "
                    f"{sampler_name}: give at least {floor}")
        return True

    def optimize(self, model, positive, negative, latent_image, sampler_name, steps, cfg,
                 calibration_seed, budget_calls):
        seed = calibration_seed
        ms = host.model_sampling(model)
        sigma_min, sigma_max = float(ms.sigma_min), float(ms.sigma_max)
        samples = host.fix_latent(model, latent_image["samples"])
        key = {"version": CACHE_VERSION, "model": model_fingerprint(model),
               "positive": conditioning_fingerprint(positive),
               "negative": conditioning_fingerprint(negative), "cfg": float(cfg),
               "sampler": sampler_name, "steps": int(steps), "seed": int(seed),
               "budget_calls": int(budget_calls), "shape": list(samples.shape),
               "sigma_range": [sigma_min, sigma_max]}
        path = host_cache.entry_path("schedules", key)
        cached = _read_cache(path)
        if cached is not None:
            sigmas, entry = cached
            return _output(sigmas, f"cached: {entry.get('summary', '')}", model,
                           _outcome(entry, cached=True))
        # Every fixed schedule of this model is scored as a start, so the result is
        # never worse on the calibration batch than the best of them.
        starts = fixed_starts(steps, sigma_min, sigma_max, model_sampling=host.sampling_of(ms))
        searcher = host.SearchKSAMPLER(optimize, sampler_name, steps, budget_calls, seed,
                                       sigma_min, sigma_max, starts)
        # The reference range: sigma_max -> sigma_min -> 0, as the host hands any sampler.
        span = torch.tensor([sigma_max, sigma_min, 0.0], dtype=torch.float32)
        host.sample(model, seed, cfg, searcher, span, positive, negative,
                    {"samples": samples}, add_noise=True)
        result = searcher.result
        sigmas = result.sigmas
        entry = {"key": key, "sigmas": sigmas.tolist(), "summary": result.summary(),
                 "calls": result.calls, "error_before": result.error_before,
                 "error_after": result.error_after, "start": result.start,
                 "start_errors": result.start_errors}
        host_cache.write_entry(path, entry)
        return _output(sigmas, result.summary(), model, _outcome(entry, cached=False))
