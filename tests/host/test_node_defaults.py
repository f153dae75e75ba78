"""Our nodes beside the host's own: where an input has the core's name, its
default is the core's (a fresh node gives the core's image), and what a
new user sees by default is the core's inputs plus noise_strength; every
other control carries the frontend's `advanced` flag (ComfyUI PR #11939),
which folds it away without touching saved values.

The oracle is the host's own node definitions (KSampler, KSamplerAdvanced,
KSamplerSelect, BasicScheduler) as this host declares them."""
import pytest

from hostlib import comfy, cond, sd15_model  # noqa: F401  (fixtures)

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
PAIRS = [("KSampler", "SamplerLabKSampler"), ("KSamplerAdvanced", "SamplerLabKSamplerAdvanced"),
         ("KSamplerSelect", "SamplerLabSampler"), ("BasicScheduler", "SamplerLabScheduler")]


def _node(comfy, name):
    cls = comfy.nodes.NODE_CLASS_MAPPINGS.get(name) or comfy.lab.NODE_CLASS_MAPPINGS.get(name)
    if cls is None:
        cls = getattr(comfy.nodes_custom_sampler, "NODE_CLASS_MAPPINGS", {}).get(name)
    if cls is None:  # the newest host's io.ComfyNode classes
        pytest.skip(f"{name} is not a plain node class on this host")
    types = cls.INPUT_TYPES()
    return {n: d for g in ("required", "optional") for n, d in types.get(g, {}).items()}


def _scheduler_names(comfy):
    return list(getattr(comfy.samplers, "SCHEDULER_NAMES", comfy.samplers.KSampler.SCHEDULERS))


def _is_widget(decl):
    return isinstance(decl[0], (list, tuple)) or decl[0] in WIDGET_TYPES or decl[0] == "COMBO"


def _default(decl):
    """What a fresh node holds: the declared default, else (as the frontend
    does) a list's first entry, else a number's 0."""
    opts = decl[1] if len(decl) > 1 else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(decl[0], (list, tuple)):
        return list(decl[0])[0]
    if decl[0] == "COMBO":
        return opts["options"][0]
    return 0


@pytest.mark.parametrize("core_name,ours_name", PAIRS)
def test_defaults_equal_the_cores(comfy, core_name, ours_name):
    core, ours = _node(comfy, core_name), _node(comfy, ours_name)
    shared = [n for n, d in core.items() if _is_widget(d) and n in ours]
    assert shared, (core_name, list(core))
    differ = {n: (_default(core[n]), _default(ours[n])) for n in shared
              if _default(core[n]) != _default(ours[n])}
    if "simple" not in _scheduler_names(comfy)[:1]:
        # the March-2024 host listed `normal` first; we follow the newest
        # core (its list, hence its default, starts with `simple`)
        assert differ.pop("scheduler", ("normal", "simple")) == ("normal", "simple")
    assert not differ, f"{ours_name} defaults differ from {core_name}'s: {differ}"


@pytest.mark.parametrize("core_name,ours_name", PAIRS[:2])
def test_ksamplers_show_the_cores_inputs_plus_noise_strength(comfy, core_name, ours_name):
    core, ours = _node(comfy, core_name), _node(comfy, ours_name)
    basic = [n for n, d in ours.items() if _is_widget(d) and not (d[1] or {}).get("advanced")]
    folded = [n for n, d in ours.items() if _is_widget(d) and (d[1] or {}).get("advanced")]
    core_widgets = [n for n, d in core.items() if _is_widget(d)]
    assert basic == core_widgets + ["noise_strength"], basic
    # s_noise, the noise window, churn, restart, detail: 12 on both nodes
    assert {"s_noise", "noise_start", "noise_end", "s_churn", "s_tmin", "s_tmax", "restart",
            "detail_amount", "detail_start", "detail_end", "detail_bias",
            "detail_exponent"} <= set(folded), folded
    assert not set(folded) & set(core_widgets)


def test_sampler_and_scheduler_expert_inputs_are_advanced(comfy):
    sampler, scheduler = _node(comfy, "SamplerLabSampler"), _node(comfy, "SamplerLabScheduler")
    adv = lambda decls, name: bool((decls[name][1] or {}).get("advanced"))  # noqa: E731
    # the core marks s_noise, order and tolerances advanced (PR #12197)
    for name in ("s_noise", "lms_order", "dpm_adaptive_rtol", "dpm_adaptive_atol", "restart",
                 "s_churn", "detail_amount"):
        assert adv(sampler, name), name
    for name in ("sampler_name", "noise_strength", "dpmpp_2m_solver_type",
                 "gradient_estimation_ge_gamma"):
        assert not adv(sampler, name), name
    for name in ("scheduler", "steps", "denoise", "karras_rho", "beta_alpha", "laplace_mu"):
        assert not adv(scheduler, name), name
    for name in ("vp_beta_d", "vp_eps_s", "ltxv_terminal", "bong_tangent_slope_1"):
        assert adv(scheduler, name), name


def test_the_flag_changes_no_order_and_no_value(comfy):
    """The flag is an option beside the others: the widget order and every
    default stay the previous release's (test_workflows freezes the order)."""
    from sampler_lab.nodes.widgets import control_inputs
    for name, decl in control_inputs().items():
        assert decl[1]["advanced"] is True, name
    ours = _node(comfy, "SamplerLabKSampler")
    assert ours["restart"][1]["default"] == "" and ours["s_noise"][1]["default"] == 1.0


def test_a_fresh_node_gives_the_cores_image(comfy, sd15_model, cond):
    """Both KSamplers run with nothing but their own declared defaults (the
    scheduler left at each node's default): the same latent. On the
    March-2024 host, whose default scheduler is `normal`, the core is run as
    the newest core's fresh node (`simple`)."""
    import torch
    pos, neg = cond
    core_decl, ours_decl = _node(comfy, "KSampler"), _node(comfy, "SamplerLabKSampler")
    args = lambda decls: {n: _default(d) for n, d in decls.items() if _is_widget(d)}  # noqa: E731
    core_args, ours_args = args(core_decl), args(ours_decl)
    core_args["scheduler"] = "simple"  # as the newest core's fresh node
    core_args["steps"] = ours_args["steps"] = 6  # the default 20 would cost 3x for nothing
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd15_model, positive=pos, negative=neg,
                                             latent_image=latent, **core_args)[0]["samples"]
        out = comfy.lab.LabKSampler().sample(sd15_model, positive=pos, negative=neg,
                                             latent_image=latent, **ours_args)
    ours = (out["result"] if isinstance(out, dict) else out)[0]["samples"]
    assert {k: v for k, v in ours_args.items() if k in core_args} == core_args
    assert torch.isfinite(ours).all()
    err = ((ours - core).norm() / core.norm()).item()
    assert err < 1e-4, f"a fresh node of ours vs the core's: relative difference {err:.2e}"
