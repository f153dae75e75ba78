"""The host side of Sampler Lab Tune Sampler: the calibration runs where the
host would run a sampler (so the model sees the conditioning, CFG, patches
and device placement exactly as SamplerCustom gives them), with the host's
progress bar and its interrupt; and the fitted sampler as the host's SAMPLER.

Only this file (and the other nodes/host*.py) reads ComfyUI internals.
"""
import torch

import comfy.model_management
import comfy.samplers
import comfy.utils

from . import host


class Interrupted(Exception):
    """Stands for the host's InterruptProcessingException where it has none."""


def interrupt_exception():
    """The host's own interrupt exception class (the executor reports it as a
    cancel, not as an error)."""
    return getattr(comfy.model_management, "InterruptProcessingException", Interrupted)


def processing_interrupted():
    """Whether the user pressed Cancel (the host's flag; not reset here)."""
    check = getattr(comfy.model_management, "processing_interrupted", None)
    return bool(check()) if check is not None else False


def raise_interrupted():
    """Raise the host's interrupt exception, resetting its flag as the host's
    own throw_exception_if_processing_interrupted does."""
    throw = getattr(comfy.model_management, "throw_exception_if_processing_interrupted", None)
    if throw is not None:
        throw()  # raises, and resets the flag, while the flag is set
    raise interrupt_exception()("Sampler Lab Tune Sampler was cancelled")


def progress_bar(total):
    """The host's progress bar (also what the server's interrupt hooks into)."""
    return comfy.utils.ProgressBar(int(total))


class CalibrationRun(comfy.samplers.KSAMPLER):
    """Runs `fit(denoiser, noise, process, start_scale)` where the host would
    run a sampler over [sigma_max, sigma_min, 0]: `denoiser(x, sigma_batch)`
    is the host's CFG-wrapped model with its extra_args, `noise` x / sigma_max
    with x what the host's own noise_scaling hands a sampler (an eps model's
    start is noise x sqrt(1 + sigma_max^2)), so start_scale x noise is that x
    exactly: the tuned sampler is later handed the same x, `process` the
    engine's process for the model. The fit's return value is
    kept in `.result`; the host's latent comes back unchanged."""

    def __init__(self, fit):
        self.fit = fit
        self.result = None
        self.process = None
        super().__init__(self._calibrate, extra_options={}, inpaint_options={})

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        self.process = host.model_process(model_wrap.inner_model.model_sampling)
        return super().sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)

    def _calibrate(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra = dict(extra_args or {})

        def denoiser(x_, sigma_batch):
            return model(x_, sigma_batch, **extra)

        start = float(sigmas[0])
        self.result = self.fit(denoiser, x / start, self.process, start)
        return x


class TunedKSAMPLER(comfy.samplers.KSAMPLER):
    """A tuned sampler as the host's SAMPLER. `function` has a KSAMPLER
    function's signature (fn(model, x, sigmas, extra_args, callback,
    disable), TunedSampler.sampler_function()). It runs only on the SIGMAS
    it was fitted with (its own SIGMAS output) and only on a model of the
    process it was fitted on; otherwise a ValueError names the input."""

    def __init__(self, function, sigmas, process_name):
        self.fitted_sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        self.process_name = process_name
        super().__init__(function, extra_options={}, inpaint_options={})

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        given = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).reshape(-1)
        want = self.fitted_sigmas
        if given.shape != want.shape or not torch.allclose(given, want, rtol=1e-5, atol=1e-7):
            raise ValueError(
                "sigmas: a tuned sampler runs only on the SIGMAS it was fitted with (connect "
                f"Sampler Lab Tune Sampler's SIGMAS output); it has {len(want)} sigmas "
                f"{[round(float(v), 5) for v in want]}, got {len(given)} "
                f"{[round(float(v), 5) for v in given]}")
        kind = host.process_of(model_wrap.inner_model.model_sampling)
        if kind != self.process_name:
            raise ValueError(f"model: this tuned sampler was fitted on a {self.process_name} "
                             f"model; this one is {kind}")
        return super().sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)
