"""The controls (restart, unsampling, churn, noise window, detail) through our
nodes in a real ComfyUI, with the core's own nodes around them (FlipSigmas,
SamplerCustom, SamplerCustomAdvanced) and against the core's churn."""
import math

import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)

CONTROLS = ["noise_start", "noise_end", "s_churn", "s_tmin", "s_tmax", "restart",
            "detail_amount", "detail_start", "detail_end", "detail_bias", "detail_exponent"]
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


def _out(result):
    return result["result"] if isinstance(result, dict) else result


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _flow_cond():
    c = torch.zeros(1, 1, 4096)
    extra = {"pooled_output": torch.zeros(1, 2048)}
    return [[c, dict(extra)]], [[c.clone(), dict(extra)]]


def _custom(comfy, model, sampler, sigmas, latent, pos, neg, add_noise=True, seed=5, cfg=1.0):
    return comfy.nodes_custom_sampler.SamplerCustom().sample(
        model, add_noise, seed, cfg, pos, neg, sampler, sigmas, latent)[0]["samples"]


def _lab_sampler(comfy, name, **controls):
    return comfy.lab.LabSampler().get_sampler(name, -1.0, 1.0, **controls)[0]


# --- declarations -------------------------------------------------------------------

@pytest.mark.parametrize("node", ["SamplerLabKSampler", "SamplerLabKSamplerAdvanced",
                                  "SamplerLabSampler"])
def test_controls_are_appended_last_as_optional_widgets(comfy, node):
    """Saved workflows store widget values by position: the controls come
    after every widget these nodes had, optional (an older workflow loads
    them at their defaults), in this order; only inputs appended later
    (the noise inputs, advanced) follow them."""
    later = {"variation_seed", "variation_strength", "noise_type", "fresh_noise"}
    types = comfy.lab.NODE_CLASS_MAPPINGS[node].INPUT_TYPES()
    widgets = [k for g in ("required", "optional") for k, d in types.get(g, {}).items()
               if isinstance(d[0], list) or d[0] in WIDGET_TYPES]
    start = widgets.index(CONTROLS[0])
    assert widgets[start:start + len(CONTROLS)] == CONTROLS
    assert set(widgets[start + len(CONTROLS):]) <= later
    optional = list(types["optional"])
    start = optional.index(CONTROLS[0])
    assert optional[start:start + len(CONTROLS)] == CONTROLS
    assert not set(CONTROLS) & set(types["required"])


@pytest.mark.parametrize("node", ["SamplerLabKSampler", "SamplerLabKSamplerAdvanced",
                                  "SamplerLabSampler"])
def test_restart_text_is_validated_before_the_run(comfy, node):
    cls = comfy.lab.NODE_CLASS_MAPPINGS[node]
    assert cls.VALIDATE_INPUTS(restart="") is True
    assert cls.VALIDATE_INPUTS(restart="default") is True
    assert cls.VALIDATE_INPUTS(restart="[3,2,0.06,0.30],[3,1,0.30,0.59]") is True
    msg = cls.VALIDATE_INPUTS(restart="[[1, 1, 0.1, 2]]")
    assert isinstance(msg, str) and "restart" in msg and "[2, 1000]" in msg
    assert "restart must be" in cls.VALIDATE_INPUTS(restart="os.system('x')")


def test_bad_controls_are_refused_with_their_names(comfy):
    with pytest.raises(ValueError, match=r"noise_start and noise_end"):
        _lab_sampler(comfy, "sa_solver", noise_start=0.8, noise_end=0.2)
    with pytest.raises(ValueError, match=r"detail start \(0.9\)"):
        _lab_sampler(comfy, "euler", detail_amount=0.1, detail_start=0.9, detail_end=0.1)
    with pytest.raises(ValueError, match=r"restart segment 1"):
        _lab_sampler(comfy, "euler", restart="[[4, 1, 3, 2]]")


# --- churn -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
def test_churn_equals_the_core_samplers_churn(comfy, sd15_model, cond, name):
    """The core's sample_euler / heun / dpm_2 with s_churn and ours, both run
    by SamplerCustom on the same model, given the same noise (torch's global
    generator, seeded alike before each run)."""
    import comfy.k_diffusion.sampling as kds
    from sampler_lab.nodes import host
    from sampler_lab.samplers import get_sampler
    pos, neg = cond
    sigmas = comfy.nodes_custom_sampler.BasicScheduler().get_sigmas(
        sd15_model, "karras", 10, 1.0)[0]
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    kw = dict(s_churn=4.0, s_tmin=0.1, s_tmax=8.0, s_noise=1.0)

    def core_fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
        torch.manual_seed(11)
        return getattr(kds, f"sample_{name}")(model, x, sigmas, extra_args=extra_args,
                                              callback=callback, disable=disable, **kw)

    def our_fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
        torch.manual_seed(11)
        process = host.model_process(host._inner_model_sampling(model))
        return get_sampler(name).fn(model, x, sigmas, extra_args=extra_args, callback=callback,
                                    disable=disable, process=process, **kw)
    with torch.inference_mode():
        core = _custom(comfy, sd15_model, comfy.samplers.KSAMPLER(core_fn), sigmas, latent,
                       pos, neg)
        ours = _custom(comfy, sd15_model, comfy.samplers.KSAMPLER(our_fn), sigmas, latent,
                       pos, neg)
        plain = _custom(comfy, sd15_model, _lab_sampler(comfy, name), sigmas, latent, pos, neg)
    assert _rel(ours, core) < 1e-5
    assert _rel(plain, core) > 1e-3  # churn did something


def test_churn_through_our_nodes_is_seeded_and_keeps_the_flow_spread(comfy, sd3_model):
    """Churn on a flow model (the core's churn adds VE-style noise there;
    ours re-mixes): the same seed gives the same image, and the result's
    spread is the data's (std 0.5, mean 0.1)."""
    pos, neg = _flow_cond()
    latent = {"samples": torch.zeros(16, 16, 8, 8)}
    args = (sd3_model, 9, 40, 1.0, "heun", "simple", pos, neg, latent, 1.0, -1.0, 1.0)
    with torch.inference_mode():
        a = _out(comfy.lab.LabKSampler().sample(*args, s_churn=8.0))[0]["samples"]
        b = _out(comfy.lab.LabKSampler().sample(*args, s_churn=8.0))[0]["samples"]
    assert torch.equal(a, b)
    x0 = sd3_model.model.process_latent_in(a)
    assert abs(float(x0.mean()) - 0.1) < 0.02
    assert abs(float(x0.std()) / 0.5 - 1) < 0.05


# --- restart -----------------------------------------------------------------------

def test_restart_through_the_ksampler_counts_its_calls_and_steps(comfy, sd15_model, cond):
    """A1111's default at 20 steps: one restart of 9 Heun steps. The model is
    called as the engine declares (cfg 1: one call per evaluation) and the
    progress reaches the total of 29 steps."""
    from sampler_lab.samplers import get_sampler
    import latent_preview
    pos, neg = cond
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    seen = []
    real = latent_preview.prepare_callback

    def spy(model, steps, *a, **k):
        inner = real(model, steps, *a, **k)

        def cb(step, x0, x, total):
            seen.append((step, total))
            return inner(step, x0, x, total)
        return cb
    latent_preview.prepare_callback = spy
    net = sd15_model.model.diffusion_model
    try:
        with torch.inference_mode():
            net.calls = 0
            out = _out(comfy.lab.LabKSampler().sample(
                sd15_model, 1, 20, 1.0, "heun", "karras", pos, neg, latent, 1.0, -1.0, 1.0,
                restart="default"))
    finally:
        latent_preview.prepare_callback = real
    assert torch.isfinite(out[0]["samples"]).all()
    from sampler_lab.nodes import host
    sig = host.schedule(sd15_model, "karras", 20)
    declared = get_sampler("heun").calls(sig, restart="default")
    assert net.calls == declared == 2 * 29 - 1  # Heun: 2 calls a step, 1 on the step to 0
    assert [s for s, _ in seen] == list(range(29)) and {t for _, t in seen} == {29}


def test_restart_with_k_zero_equals_the_plain_run(comfy, sd15_model, cond):
    pos, neg = cond
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    args = (sd15_model, 4, 12, 1.0, "dpmpp_2m", "karras", pos, neg, latent, 1.0, -1.0, 1.0)
    with torch.inference_mode():
        plain = _out(comfy.lab.LabKSampler().sample(*args))[0]["samples"]
        k0 = _out(comfy.lab.LabKSampler().sample(*args, restart="[[5, 0, 0.5, 2]]"))[0]["samples"]
        k1 = _out(comfy.lab.LabKSampler().sample(*args, restart="[[5, 1, 0.5, 2]]"))[0]["samples"]
    assert torch.equal(k0, plain)
    assert _rel(k1, plain) > 1e-3


def test_restart_sampler_in_sampler_custom_advanced_on_flow(comfy, sd3_model):
    """Our Sampler with restart in the core's SamplerCustomAdvanced (newest
    host) on a flow model: the re-noising is the process's, so the spread
    stays the data's."""
    ns = comfy.nodes_custom_sampler
    if not hasattr(ns, "SamplerCustomAdvanced"):
        pytest.skip("this host has no SamplerCustomAdvanced")
    pos, neg = _flow_cond()
    sigmas = _out(comfy.lab.LabScheduler().get_sigmas(sd3_model, "simple", 30, 1.0))[0]
    sampler = _lab_sampler(comfy, "dpmpp_2m", restart="[[8, 2, 0.2, 0.7]]")
    guider = ns.BasicGuider().get_guider(sd3_model, pos)[0]
    noise = ns.RandomNoise().get_noise(3)[0]
    latent = {"samples": torch.zeros(64, 16, 8, 8)}
    with torch.inference_mode():
        out = _out(ns.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent))
    x0 = sd3_model.model.process_latent_in(out[0]["samples"])
    assert abs(float(x0.mean()) - 0.1) < 0.02
    assert abs(float(x0.std()) / 0.5 - 1) < 0.05


# --- unsampling ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "uni_pc", "res_2s"])
@pytest.mark.parametrize("source", ["scheduler", "custom"])
def test_unsample_with_flip_sigmas_then_resample(comfy, sd15_model, cond, name, source):
    """Our SIGMAS through the core's FlipSigmas and our Sampler in
    SamplerCustom (no added noise) carry a latent up to sigma_max; the same
    sampler brings it back. The round trip's error falls with the steps
    (Euler: first order, 0.30 at 10 steps, 0.11 at 30)."""
    ns = comfy.nodes_custom_sampler
    pos, neg = cond
    g = torch.Generator().manual_seed(0)
    x0 = 0.1 + 0.5 * torch.randn(2, 4, 8, 8, generator=g)
    latent = {"samples": sd15_model.model.process_latent_out(x0)}
    errs = []
    for steps in (10, 30):
        if source == "scheduler":
            sigmas = _out(comfy.lab.LabScheduler().get_sigmas(sd15_model, "karras", steps,
                                                               1.0))[0]
        else:
            text = ", ".join(f"{float(s):.6g}" for s in _out(comfy.lab.LabScheduler().get_sigmas(
                sd15_model, "karras", steps, 1.0))[0])
            sigmas = _out(comfy.lab.LabCustomSigmas().get_sigmas(text))[0]
        up = ns.FlipSigmas().get_sigmas(sigmas)[0]
        sampler = _lab_sampler(comfy, name)
        with torch.inference_mode():
            noisy = _custom(comfy, sd15_model, sampler, up, latent, pos, neg, add_noise=False)
            back = _custom(comfy, sd15_model, sampler, sigmas, {"samples": noisy}, pos, neg,
                           add_noise=False)
        assert torch.isfinite(noisy).all()
        errs.append(_rel(back, latent["samples"]))
    assert errs[1] < errs[0] and errs[1] < (0.15 if name == "euler" else 0.05), errs


def test_unsample_on_flow_below_one_and_a_clear_error_at_one(comfy, sd3_model):
    ns = comfy.nodes_custom_sampler
    pos, neg = _flow_cond()
    g = torch.Generator().manual_seed(0)
    x0 = 0.1 + 0.5 * torch.randn(2, 16, 8, 8, generator=g)
    latent = {"samples": sd3_model.model.process_latent_out(x0)}
    sampler = _lab_sampler(comfy, "dpmpp_2m")
    # denoise < 1: the schedule starts below sigma 1, where the host can store x
    sigmas = _out(comfy.lab.LabScheduler().get_sigmas(sd3_model, "simple", 30, 0.95))[0]
    up = ns.FlipSigmas().get_sigmas(sigmas)[0]
    with torch.inference_mode():
        noisy = _custom(comfy, sd3_model, sampler, up, latent, pos, neg, add_noise=False)
        back = _custom(comfy, sd3_model, sampler, sigmas, {"samples": noisy}, pos, neg,
                       add_noise=False)
    assert _rel(back, latent["samples"]) < 0.05
    full = _out(comfy.lab.LabScheduler().get_sigmas(sd3_model, "simple", 10, 1.0))[0]
    with pytest.raises(ValueError, match=r"unsampling a flow model must end below sigma 1"), \
            torch.inference_mode():
        _custom(comfy, sd3_model, sampler, ns.FlipSigmas().get_sigmas(full)[0], latent, pos,
                neg, add_noise=False)


def test_unsample_with_a_stochastic_sampler_is_refused(comfy, sd15_model, cond):
    ns = comfy.nodes_custom_sampler
    pos, neg = cond
    sigmas = _out(comfy.lab.LabScheduler().get_sigmas(sd15_model, "karras", 6, 1.0))[0]
    up = ns.FlipSigmas().get_sigmas(sigmas)[0]
    with pytest.raises(ValueError, match=r"unsampling .* needs eta"), torch.inference_mode():
        _custom(comfy, sd15_model, _lab_sampler(comfy, "euler_ancestral"), up,
                {"samples": torch.zeros(1, 4, 8, 8)}, pos, neg, add_noise=False)


# --- noise window and detail ----------------------------------------------------------

def test_noise_window_widgets(comfy, sd15_model, cond):
    """-1 keeps the sampler's own window (sa_solver: 0.2-0.8); a window with
    no room for noise makes a stochastic sampler its ODE."""
    pos, neg = cond
    sigmas = _out(comfy.lab.LabScheduler().get_sigmas(sd15_model, "karras", 8, 1.0))[0]
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    with torch.inference_mode():
        own = _custom(comfy, sd15_model, _lab_sampler(comfy, "sa_solver"), sigmas, latent, pos,
                      neg)
        same = _custom(comfy, sd15_model, _lab_sampler(comfy, "sa_solver", noise_start=0.2,
                                                       noise_end=-1.0), sigmas, latent, pos, neg)
        wide = _custom(comfy, sd15_model, _lab_sampler(comfy, "sa_solver", noise_start=0.0,
                                                       noise_end=1.0), sigmas, latent, pos, neg)
        shut = _custom(comfy, sd15_model, _lab_sampler(comfy, "euler_ancestral", noise_start=1.0,
                                                       noise_end=1.0), sigmas, latent, pos, neg)
        ode = _custom(comfy, sd15_model, _lab_sampler(comfy, "euler"), sigmas, latent, pos, neg)
    assert torch.equal(own, same)
    assert _rel(wide, own) > 1e-3
    assert _rel(shut, ode) < 1e-6


def test_detail_through_the_ksampler(comfy, sd15_model, cond):
    """amount 0 is the plain run; a positive amount leaves more spread in the
    result (the model is told less noise than there is)."""
    pos, neg = cond
    latent = {"samples": torch.zeros(16, 4, 8, 8)}
    args = (sd15_model, 2, 16, 1.0, "dpmpp_2m", "karras", pos, neg, latent, 1.0, -1.0, 1.0)
    with torch.inference_mode():
        plain = _out(comfy.lab.LabKSampler().sample(*args))[0]["samples"]
        zero = _out(comfy.lab.LabKSampler().sample(*args, detail_amount=0.0,
                                                   detail_start=0.1))[0]["samples"]
        more = _out(comfy.lab.LabKSamplerAdvanced().sample(
            sd15_model, "enable", 2, 16, 1.0, "dpmpp_2m", "karras", pos, neg, latent, 0, 10000,
            "disable", -1.0, 1.0, detail_amount=0.3))[0]["samples"]
    assert torch.equal(zero, plain)
    assert float(more.std()) > float(plain.std()) * 1.01
    assert math.isfinite(float(more.sum()))


# --- a v-prediction model ------------------------------------------------------------

class GaussianV(torch.nn.Module):
    """The exact v prediction for data N(0.1, 0.5^2): the host feeds
    x / sqrt(1 + sigma^2) and reads D = x / (1 + sigma^2) - v sigma / sqrt(1 + sigma^2)."""

    def __init__(self, model_sampling, mean=0.1, std=0.5):
        super().__init__()
        self.ms, self.mean, self.std = model_sampling, mean, std
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, xv, t, context=None, **kwargs):
        sigma = self.ms.sigma(t).reshape(-1, *([1] * (xv.ndim - 1))).to(xv)
        root = (1 + sigma ** 2).sqrt()
        x = xv * root
        d = self.mean + self.std ** 2 / (self.std ** 2 + sigma ** 2) * (x - self.mean)
        return (x / (1 + sigma ** 2) - d) * root / sigma


@pytest.fixture
def v_model(comfy):
    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.V_PREDICTION,
                                      device="cpu")
    base.diffusion_model = GaussianV(base.model_sampling)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


@pytest.mark.parametrize("sampler,controls", [
    ("heun", {"restart": "default"}),
    ("heun", {"s_churn": 6.0}),
    ("dpmpp_2m", {"detail_amount": 0.05}),
    ("sa_solver", {"noise_start": 0.0, "noise_end": 1.0}),
])
def test_controls_on_a_v_model_keep_the_data_spread(comfy, v_model, cond, sampler, controls):
    pos, neg = cond
    latent = {"samples": torch.zeros(32, 4, 8, 8)}
    with torch.inference_mode():
        out = _out(comfy.lab.LabKSampler().sample(
            v_model, 5, 30, 1.0, sampler, "karras", pos, neg, latent, 1.0, -1.0, 1.0,
            **controls))[0]["samples"]
    x0 = v_model.model.process_latent_in(out)
    assert abs(float(x0.mean()) - 0.1) < 0.02
    assert abs(float(x0.std()) / 0.5 - 1) < (0.1 if "detail_amount" in controls else 0.05)


def test_unsample_round_trip_on_a_v_model(comfy, v_model, cond):
    ns = comfy.nodes_custom_sampler
    pos, neg = cond
    g = torch.Generator().manual_seed(0)
    latent = {"samples": v_model.model.process_latent_out(0.1 + 0.5 * torch.randn(
        2, 4, 8, 8, generator=g))}
    sigmas = _out(comfy.lab.LabScheduler().get_sigmas(v_model, "karras", 30, 1.0))[0]
    sampler = _lab_sampler(comfy, "dpmpp_2m")
    with torch.inference_mode():
        noisy = _custom(comfy, v_model, sampler, ns.FlipSigmas().get_sigmas(sigmas)[0], latent,
                        pos, neg, add_noise=False)
        back = _custom(comfy, v_model, sampler, sigmas, {"samples": noisy}, pos, neg,
                       add_noise=False)
    assert _rel(back, latent["samples"]) < 0.05
