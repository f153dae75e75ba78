"""The host calls a node's VALIDATE_INPUTS with exactly the inputs its
signature names, so an input it checks nowhere else must be named there.
Hosts that check only required inputs (the March-2024 one): every node that
shows the engine's controls (CONTROL_NAMES: noise window, churn, detail)
must name each of them, and the other checked widgets it shows. Hosts that
check every declared input's range themselves (HOST_CHECKS_OPTIONAL_INPUTS,
the newest core): each control must carry the min and max the host checks,
and the signature must still name the restart text, which no declaration
describes."""
import inspect

import pytest

from hostlib import comfy  # noqa: F401  (fixture)

# Widgets the sampling nodes check before a run (check_sampling_inputs and
# check_ranges in nodes/widgets.py), besides the controls.
CHECKED = ("sampler_name", "scheduler", "restart", "noise_strength", "s_noise", "boundary",
           "cfg_low", "variation_strength")
SHOWING = ("SamplerLabKSampler", "SamplerLabKSamplerAdvanced", "SamplerLabSampler")


def _inputs(cls):
    names = {}
    for group in cls.INPUT_TYPES().values():
        names.update(group)
    return names


def test_every_shown_control_is_validated(comfy):
    from sampler_lab.nodes import host
    from sampler_lab.nodes.widgets import CONTROL_NAMES
    assert CONTROL_NAMES, "no controls declared"
    showing = set()
    for node_id, cls in comfy.lab.NODE_CLASS_MAPPINGS.items():
        shown = _inputs(cls)
        if not set(CONTROL_NAMES) & set(shown):
            continue
        showing.add(node_id)
        assert set(CONTROL_NAMES) <= set(shown), f"{node_id} shows only some controls"
        assert hasattr(cls, "VALIDATE_INPUTS"), f"{node_id} has controls but no VALIDATE_INPUTS"
        params = set(inspect.signature(cls.VALIDATE_INPUTS).parameters)
        if host.HOST_CHECKS_OPTIONAL_INPUTS:
            for name in CONTROL_NAMES:
                kind, spec = shown[name][0], shown[name][1]
                if kind in ("INT", "FLOAT"):
                    assert "min" in spec and "max" in spec, f"{node_id}.{name} has no range"
            missing = {"restart"} & set(shown) - params
        else:
            missing = (set(CONTROL_NAMES) | (set(CHECKED) & set(shown))) - params
        assert not missing, f"{node_id}.VALIDATE_INPUTS never sees {sorted(missing)}"
    assert set(SHOWING) <= showing, sorted(showing)


@pytest.mark.parametrize("node_id", SHOWING)
def test_a_bad_value_is_refused_before_the_run(comfy, node_id):
    """The signature is not only present: a bad value comes back as the
    validation message naming the input (a control below its range where the
    node checks the controls, else the restart text)."""
    from sampler_lab.nodes import host
    from sampler_lab.nodes.widgets import control_inputs
    cls = comfy.lab.NODE_CLASS_MAPPINGS[node_id]
    if host.HOST_CHECKS_OPTIONAL_INPUTS:
        name, value = "restart", "[[4, 1, 2.0, 0.1]]"  # t_min above t_max
    else:
        name = "s_churn"
        value = control_inputs()[name][1]["min"] - 1.0
    msg = cls.VALIDATE_INPUTS(**{name: value})
    assert isinstance(msg, str) and name in msg, msg
