"""The host calls a node's VALIDATE_INPUTS with exactly the inputs its
signature names (both hosts read the signature), so an input left out of
it is validated by nobody before the run. Every node that shows the
engine's controls (CONTROL_NAMES: noise window, churn, detail) must name
each of them, and the other checked widgets it shows."""
import inspect

import pytest

from hostlib import comfy  # noqa: F401  (fixture)

# Widgets the sampling nodes check before a run (check_sampling_inputs and
# check_ranges in nodes/widgets.py), besides the controls.
CHECKED = ("sampler_name", "scheduler", "restart", "noise_strength", "s_noise", "boundary",
           "cfg_low")


def _inputs(cls):
    names = set()
    for group in cls.INPUT_TYPES().values():
        names.update(group)
    return names


def test_every_shown_control_is_validated(comfy):
    from sampler_lab.nodes.widgets import CONTROL_NAMES
    assert CONTROL_NAMES, "no controls declared"
    showing = {}
    for node_id, cls in comfy.lab.NODE_CLASS_MAPPINGS.items():
        shown = _inputs(cls)
        if not set(CONTROL_NAMES) & shown:
            continue
        showing[node_id] = cls
        assert set(CONTROL_NAMES) <= shown, f"{node_id} shows only some controls"
        assert hasattr(cls, "VALIDATE_INPUTS"), f"{node_id} has controls but no VALIDATE_INPUTS"
        params = set(inspect.signature(cls.VALIDATE_INPUTS).parameters)
        missing = (set(CONTROL_NAMES) | (set(CHECKED) & shown)) - params
        assert not missing, f"{node_id}.VALIDATE_INPUTS never sees {sorted(missing)}"
    # the KSampler, its Advanced form and the Sampler show the controls
    assert {"SamplerLabKSampler", "SamplerLabKSamplerAdvanced", "SamplerLabSampler"} <= \
        set(showing), sorted(showing)


@pytest.mark.parametrize("name", ["s_churn", "detail_amount", "noise_start"])
def test_a_bad_control_value_is_refused_before_the_run(comfy, name):
    """The signature is not only present: a value out of the widget's range
    comes back as the host's validation message naming the input."""
    from sampler_lab.nodes.widgets import control_inputs
    lo = control_inputs()[name][1]["min"]
    for node_id in ("SamplerLabKSampler", "SamplerLabSampler"):
        cls = comfy.lab.NODE_CLASS_MAPPINGS[node_id]
        msg = cls.VALIDATE_INPUTS(sampler_name="euler", **{name: lo - 1.0})
        assert isinstance(msg, str) and name in msg, (node_id, msg)
