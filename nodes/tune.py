"""Sampler Lab Tune Sampler: a sampler fitted to the user's model, conditioning
and CFG (the engine's `tuning.tune`: an auto pick of the best fixed sampler x
schedule at the budget, then step times and per-step solver coefficients
fitted against a fine reference solve), as SAMPLER + SIGMAS for the core's
SamplerCustom / SamplerCustomAdvanced.

Where the fitted table lives, in the order the node looks:

1. the workflow: the node's `tuned_table` widget (a STRING, hidden by
   web/tune_table.js) holds the JSON of the last fit. The node sends that
   JSON to the browser with its outputs (ui "sampler_lab_tuned_table") and
   the frontend writes it into the widget, so it is saved with the workflow
   and sent with every queued prompt. When the table's key (model weights
   fingerprint, conditioning, cfg, calls, max_evals, seed, latent shape,
   sigma range) equals the current inputs' key, the table is used as it is:
   no calibration, no cache needed — a shared workflow reproduces on a
   machine that never ran the fit. A table for other settings is replaced
   by a new fit; text that is not a table of this node (bad JSON, another
   format, a field out of range) is a ValueError naming `tuned_table`.
2. the cache: <ComfyUI user folder>/sampler_lab/tuned/<key digest>.json
   (nodes/host_cache.py), written only after a fit completed.
3. a new fit, with the host's progress bar; Cancel stops it (nothing is
   written) and is reported as the host's own interrupt.
"""
import json
import math
import time

import torch

from .. import tuning
from . import host, host_cache, host_tune
from .ksampler import CATEGORY, MAX_SEED, with_sigmas

CACHE_KIND = "tuned"
CACHE_VERSION = 1      # bump when the engine changes what a fit returns
TABLE_FORMAT = "sampler_lab.tune_sampler.workflow"
TABLE_VERSION = 1
RANKING_SHOWN = 3


def _engine_tune(denoiser, noise, process, start_scale, key, model_sampling, progress,
                 should_stop):
    try:
        return tuning.tune(denoiser, noise, process, key["calls"], max_evals=key["max_evals"],
                           seed=key["seed"], model_sampling=model_sampling,
                           start_scale=start_scale,
                           key=key["model"][:16], progress=progress, should_stop=should_stop)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("denoiser"):  # the model's output, with this prompt and cfg
            raise ValueError(f"model: {text}") from None
        raise


def _number(value):
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def describe(tuned, source, key):
    """What the node shows of a fit (JSON-safe): where it came from (new fit,
    cache or workflow), the calibration cost, the error of the best fixed
    sampler x schedule (before) and of the tuned one (after), the ranking's
    top entries."""
    errors = dict(getattr(tuned, "errors", {}) or {})
    cost = dict(getattr(tuned, "cost", {}) or {})
    ranking = []
    for row in list(getattr(tuned, "ranking", []) or [])[:RANKING_SHOWN]:
        sampler, schedule, err = row[0], row[1], row[2]
        ranking.append({"sampler": str(sampler), "schedule": str(schedule),
                        "error": _number(err)})
    base = dict(getattr(tuned, "base", {}) or {})
    start = f"{base['sampler']} + {base['schedule']}" if base.get("sampler") else ""
    evals = cost.get("evals")
    return {"cached": source != "new", "source": source,
            "calls": int(evals) if isinstance(evals, (int, float)) else None,
            "budget_calls": int(key["max_evals"]), "calls_per_image": int(key["calls"]),
            "seconds": _number(cost.get("seconds")),
            "error_before": _number(errors.get("before")),
            "error_after": _number(errors.get("after")),
            "start": start, "ranking": ranking}


def summary_line(outcome):
    def err(v):
        return "?" if v is None else f"{v:.3g}"
    where = {"new": "new fit", "cache": "cached fit", "workflow": "fit from the workflow"}
    top = ", ".join(f"{r['sampler']}+{r['schedule']} {err(r['error'])}"
                    for r in outcome["ranking"])
    return (f"{where.get(outcome['source'], outcome['source'])}: {outcome['calls_per_image']} "
            f"calls per image; calibration {outcome['calls']} model evaluations; error "
            f"{err(outcome['error_before'])} ({outcome['start'] or 'best fixed'}) -> "
            f"{err(outcome['error_after'])}; ranking: {top}")


def table_text(key, tuned):
    """The JSON the workflow keeps (the tuned_table widget's value)."""
    return json.dumps({"format": TABLE_FORMAT, "version": TABLE_VERSION, "key": key,
                       "tuned": tuned.to_dict()}, sort_keys=True, separators=(",", ":"))


def parse_table(text):
    """tuned_table's text -> (key, TunedSampler); ValueError naming
    tuned_table for anything that is not a table this node wrote."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"tuned_table: not JSON ({exc}); clear the widget to fit again") \
            from None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise ValueError(f"tuned_table: not a Sampler Lab tuned sampler (its 'format' must be "
                         f"{TABLE_FORMAT!r}); clear the widget to fit again")
    if data.get("version") != TABLE_VERSION:
        raise ValueError(f"tuned_table: version {data.get('version')!r} is not the "
                         f"{TABLE_VERSION} this Sampler Lab reads; clear the widget to fit again")
    if not isinstance(data.get("key"), dict) or not isinstance(data.get("tuned"), dict):
        raise ValueError("tuned_table: needs a 'key' object and a 'tuned' object; clear the "
                         "widget to fit again")
    try:
        tuned = tuning.TunedSampler.from_dict(data["tuned"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"tuned_table: {exc}") from None
    return data["key"], tuned


class LabTuneSampler:
    DESCRIPTION = (
        "Fits a sampler to this model, prompt and CFG: every Sampler Lab sampler x schedule "
        "is scored at the budget against a fine reference solve from the calibration noise, "
        "then the best one's step times and per-step coefficients are fitted to it (never "
        "worse than the best fixed pick on the calibration batch). Connect SAMPLER and SIGMAS "
        "to SamplerCustom / SamplerCustomAdvanced. The fit is cached in ComfyUI's user folder "
        "and saved in the workflow (tuned_table), so a shared workflow reproduces without it.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SAMPLER", "SIGMAS")
    RETURN_NAMES = ("sampler", "sigmas")
    OUTPUT_TOOLTIPS = ("The tuned sampler: runs only with the SIGMAS beside it.",
                       "Its calls + 1 (or so) fitted noise levels, ending in 0.")
    FUNCTION = "tune"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to fit the sampler to."}),
            "positive": ("CONDITIONING", {"tooltip": "A typical prompt for this model."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                              "round": 0.01, "tooltip": "The CFG you will sample with."}),
            "latent_image": ("LATENT", {"tooltip": "Sets the shape; its batch is the "
                                        "calibration batch (4-8 images fit more robustly "
                                        "than 1; each counts in max_evals)."}),
            "calls": ("INT", {"default": 8, "min": 1, "max": tuning.sampler.MAX_CALLS, "tooltip":
                              "Model calls per image of the tuned sampler when it is used "
                              "(with CFG each call evaluates the model on the prompt and "
                              "the negative)."}),
            "max_evals": ("INT", {"default": 2000, "min": 1, "max": 1000000, "tooltip":
                                  "Most single-image model evaluations the calibration may "
                                  "spend, reference solve included (a call on a batch of 4 "
                                  "counts 4)."}),
            # Not named "seed": the frontend gives seed widgets a randomize-after-run
            # control, which would defeat the cache and the embedded table.
            "calibration_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                         "tooltip": "Seed of the calibration noise; the same "
                                                    "seed gives the same fit."}),
        }, "optional": {
            "tuned_table": ("STRING", {"default": "", "multiline": False, "tooltip":
                                       "The last fit, written here by the node after a run "
                                       "and saved with the workflow; used instead of a new "
                                       "fit while the inputs match. Clear it to fit again."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, tuned_table=None):
        if isinstance(tuned_table, str) and tuned_table.strip():
            try:
                parse_table(tuned_table)
            except ValueError as exc:
                return str(exc)
        return True

    def tune(self, model, positive, negative, cfg, latent_image, calls, max_evals,
             calibration_seed, tuned_table=""):
        seed = int(calibration_seed)
        ms = host.model_sampling(model)
        sigma_min, sigma_max = float(ms.sigma_min), float(ms.sigma_max)
        samples = host.fix_latent(model, latent_image["samples"])
        key = {"version": CACHE_VERSION, "model": host_cache.model_fingerprint(model),
               "positive": host_cache.conditioning_fingerprint(positive),
               "negative": host_cache.conditioning_fingerprint(negative), "cfg": float(cfg),
               "calls": int(calls), "max_evals": int(max_evals), "seed": seed,
               "shape": list(samples.shape), "sigma_range": [sigma_min, sigma_max]}

        if isinstance(tuned_table, str) and tuned_table.strip():
            table_key, tuned = parse_table(tuned_table)
            if table_key == key:
                return self._output(model, key, tuned, "workflow")
        path = host_cache.entry_path(CACHE_KIND, key)
        entry = host_cache.read_entry(path)
        if entry is not None and entry.get("key") == key:
            try:
                tuned = tuning.TunedSampler.from_dict(entry["tuned"])
            except (ValueError, TypeError, KeyError):
                tuned = None  # a damaged entry: fit again
            if tuned is not None:
                return self._output(model, key, tuned, "cache")

        tuned = self._fit(model, positive, negative, cfg, samples, key, sigma_max, sigma_min)
        host_cache.write_entry(path, {"key": key, "tuned": tuned.to_dict()})
        return self._output(model, key, tuned, "new")

    def _fit(self, model, positive, negative, cfg, samples, key, sigma_max, sigma_min):
        pbar = host_tune.progress_bar(max(1, key["max_evals"]))

        def progress(done, total):
            pbar.update_absolute(int(done), int(total))

        sampling = host.sampling_of(host.model_sampling(model))

        def fit(denoiser, noise, process, start_scale):
            return _engine_tune(denoiser, noise, process, start_scale, key, sampling, progress,
                                host_tune.processing_interrupted)

        runner = host_tune.CalibrationRun(fit)
        # The calibration range as the host hands any sampler (sigma_max -> sigma_min
        # -> 0) from zero latents: the tuned sampler starts from noise.
        span = [sigma_max, sigma_min, 0.0]
        t0 = time.time()
        try:
            host.sample(model, key["seed"], cfg, runner,
                                  torch.tensor(span, dtype=torch.float32), positive, negative,
                                  {"samples": torch.zeros_like(samples)}, add_noise=True)
        except tuning.Interrupted:
            host_tune.raise_interrupted()
        tuned = runner.result
        if tuned is None:  # pragma: no cover - the host skipped the sampler
            raise RuntimeError("the host did not run the calibration")
        pbar.update_absolute(key["max_evals"], key["max_evals"])  # done, under the cap
        print(f"[Sampler Lab] tuned sampler fitted in {time.time() - t0:.1f} s")
        return tuned

    def _output(self, model, key, tuned, source):
        sampler = host_tune.TunedKSAMPLER(tuned.sampler_function(), tuned.sigmas,
                                          tuned.process)
        sigmas = tuned.sigmas_tensor(torch.float32)
        outcome = describe(tuned, source, key)
        out = with_sigmas((sampler, sigmas), sigmas, model)
        out["ui"]["sampler_lab_outcome"] = [outcome]
        out["ui"]["sampler_lab_summary"] = [summary_line(outcome)]
        out["ui"]["sampler_lab_tuned_table"] = [table_text(key, tuned)]
        return out
