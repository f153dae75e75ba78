"""The preview behind GET /sampler_lab/sigmas: values are exactly
schedules.get_sigmas's, and every kind of bad query is a ValueError naming
the parameter (the route turns it into HTTP 400)."""
import pytest
import torch

from sampler_lab import schedules
from sampler_lab.schedules.preview import sigmas_for_query


def test_values_equal_get_sigmas():
    got = sigmas_for_query({"scheduler": "karras", "steps": "20", "rho": "5"})
    assert got == schedules.get_sigmas("karras", 20, rho=5.0).tolist()
    got = sigmas_for_query({"scheduler": "beta", "steps": "10", "denoise": "0.5"})
    assert got == schedules.get_sigmas("beta", 20)[-11:].tolist()
    # flow: the SD3-type model sampling (shift on the way back from timesteps)
    got = sigmas_for_query({"scheduler": "normal", "steps": "8", "family": "flow",
                            "shift": "2"})
    flow = schedules.FlowSampling(shift=2.0)
    assert got == schedules.get_sigmas("normal", 8, model_sampling=flow).tolist()
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    table = 2.0 * t / (1 + t)
    got = sigmas_for_query({"scheduler": "simple", "steps": "8", "family": "flow",
                            "shift": "2"})
    assert got == pytest.approx(schedules.get_sigmas("simple", 8, model_sigmas=table).tolist(),
                                rel=1.2e-7)
    assert sigmas_for_query({"scheduler": "normal", "steps": "4", "denoise": "0"}) == []


@pytest.mark.parametrize("query,needle", [
    ({"steps": "20"}, "scheduler"),
    ({"scheduler": "nope", "steps": "20"}, "scheduler"),
    ({"scheduler": "karras"}, "steps"),
    ({"scheduler": "karras", "steps": "0"}, "steps"),
    ({"scheduler": "karras", "steps": "99999"}, "steps"),
    ({"scheduler": "karras", "steps": "ten"}, "steps"),
    ({"scheduler": "karras", "steps": "10", "denoise": "nan"}, "denoise"),
    ({"scheduler": "karras", "steps": "10", "denoise": "1.5"}, "denoise"),
    ({"scheduler": "karras", "steps": "10", "family": "sd9"}, "family"),
    ({"scheduler": "karras", "steps": "10", "rho": "inf"}, "rho"),
    ({"scheduler": "karras", "steps": "10", "alpha": "0.5"}, "alpha"),
    ({"scheduler": "karras", "steps": "10", "rho": "-3"}, "rho"),
    ({"scheduler": "karras", "steps": "10", "shift": "0"}, "shift"),
])
def test_bad_queries_name_the_parameter(query, needle):
    with pytest.raises(ValueError, match=needle):
        sigmas_for_query(query)


def test_automatic_int_parameter_accepts_the_widgets_minus_one():
    # the node shows "automatic" (None) as -1; the preview takes it as the default
    got = sigmas_for_query({"scheduler": "linear_quadratic", "steps": "10",
                            "linear_steps": "-1"})
    assert got == schedules.get_sigmas("linear_quadratic", 10).tolist()
    got = sigmas_for_query({"scheduler": "linear_quadratic", "steps": "10",
                            "linear_steps": "3"})
    assert got == schedules.get_sigmas("linear_quadratic", 10, linear_steps=3).tolist()
    with pytest.raises(ValueError, match="linear_steps"):
        sigmas_for_query({"scheduler": "linear_quadratic", "steps": "10",
                          "linear_steps": "-2"})


def test_preview_info_matches_the_registries():
    import json

    from sampler_lab import samplers
    from sampler_lab.schedules.preview import KSAMPLER_SCHEDULES, preview_info
    info = json.loads(json.dumps(preview_info()))  # what the route sends
    assert list(info["samplers"]) == samplers.SAMPLER_NAMES
    for name, entry in info["samplers"].items():
        spec = samplers.get_sampler(name)
        assert entry == {"stochastic": spec.default_eta > 0, "default_eta": spec.default_eta}
    assert info["samplers"]["euler"]["default_eta"] == 0.0
    assert info["samplers"]["euler_ancestral"]["default_eta"] == 1.0
    assert list(info["schedules"]) == KSAMPLER_SCHEDULES
    assert info["schedules"]["karras"] == {"rho": {"kind": "float", "auto": False}}
    assert info["schedules"]["linear_quadratic"]["linear_steps"] == {"kind": "int",
                                                                      "auto": True}
    assert info["families"] == ["sd15", "sdxl", "flow", "flux"]
    assert info["default_shift"] == {"flow": 3.0, "flux": 1.15}
    table = schedules.sd1_sigmas().tolist()
    assert len(info["sd_sigma_table"]) == 1000
    assert info["sd_sigma_table"] == pytest.approx(table, rel=1e-5)
