"""What the web widget gets from the engine besides a schedule
(schedules/widget_info.py, served as GET /sampler_lab/info and the
noise_fraction of GET /sampler_lab/sigmas): the noise bars are
samplers.noise_fractions of the sampler's own rule on the previewed sigmas,
and the info lists every sampler option and schedule parameter by which the
nodes name their widgets."""
import json
import math

import pytest

from sampler_lab import samplers, schedules
from sampler_lab.schedules.preview import sigmas_for_query
from sampler_lab.schedules.widget_info import (noise_fraction, process_of_family,
                                               split_noise_query, widget_info)


@pytest.mark.parametrize("family", ["sd15", "flow"])
@pytest.mark.parametrize("sampler,eta,s_noise", [
    ("euler_ancestral", "-1", "1"), ("dpmpp_2m_sde", "0.5", "1"), ("dpmpp_3m_sde", "0.2", "1"),
    ("dpmpp_2m", "2", "1"), ("euler", "0.7", "1.5"), ("euler", "", ""), ("dpmpp_sde", "1", "0")])
def test_noise_fraction_is_the_engines(family, sampler, eta, s_noise):
    query = {"scheduler": "karras", "steps": "9", "family": family}
    sigmas = sigmas_for_query(query)
    got = noise_fraction(sigmas, family, {"sampler": sampler, "eta": eta, "s_noise": s_noise})
    want = samplers.noise_fractions(sampler, sigmas, process=process_of_family(family),
                                    eta=None if eta in ("", "-1") else float(eta))
    scale = float(s_noise) if s_noise else 1.0
    assert len(got) == len(sigmas) - 1
    assert got == pytest.approx([w * scale for w in want], rel=1e-12, abs=0)


def test_sde_rule_differs_from_the_ancestral_split():
    # the reason the JS copy was wrong: dpmpp_2m_sde's decay rule at eta 0.5
    # is not the ancestral split's (about 1.5x more noise at 0.5)
    sigmas = sigmas_for_query({"scheduler": "karras", "steps": "10"})
    sde = noise_fraction(sigmas, "sd15", {"sampler": "dpmpp_2m_sde", "eta": "0.5"})
    anc = noise_fraction(sigmas, "sd15", {"sampler": "euler_ancestral", "eta": "0.5"})
    ratio = [a / b for a, b in zip(sde[:-1], anc[:-1])]
    assert min(ratio) > 1.2, ratio


def test_split_noise_query():
    rest, noise = split_noise_query({"scheduler": "karras", "steps": "4", "sampler": "euler",
                                     "eta": "1", "s_noise": "1"})
    assert rest == {"scheduler": "karras", "steps": "4"}
    assert noise == {"sampler": "euler", "eta": "1", "s_noise": "1"}
    assert split_noise_query({"scheduler": "karras"}) == ({"scheduler": "karras"}, None)
    with pytest.raises(ValueError, match="eta"):
        split_noise_query({"scheduler": "karras", "eta": "1"})


@pytest.mark.parametrize("noise,needle", [
    ({"sampler": "nope"}, "unknown sampler"),
    ({"sampler": "euler", "eta": "-0.5"}, "eta"),
    ({"sampler": "euler", "eta": "nan"}, "eta"),
    ({"sampler": "euler", "eta": "x"}, "eta"),
    ({"sampler": "euler", "s_noise": "-1"}, "s_noise"),
    ({"sampler": "euler", "s_noise": "inf"}, "s_noise"),
])
def test_bad_noise_query_names_the_parameter(noise, needle):
    with pytest.raises(ValueError, match=needle):
        noise_fraction([14.6, 1.0, 0.0], "sd15", noise)


def test_info_lists_every_option_and_parameter():
    info = json.loads(json.dumps(widget_info()))  # what the route sends
    assert list(info["samplers"]) == samplers.SAMPLER_NAMES
    for name, spec in samplers.SAMPLERS.items():
        options = info["samplers"][name]["options"]
        assert list(options) == list(spec.option_specs)
        for key, o in spec.option_specs.items():
            assert options[key]["kind"] == o.kind
            if o.kind == "choice":
                assert options[key]["choices"] == list(o.choices)
    for name, params in info["schedules"].items():
        spec = schedules.SCHEDULES[name]
        assert list(params) == list(spec.params)
        for key, p in spec.params.items():
            assert params[key]["kind"] == p.kind
            if p.kind == "float":
                assert params[key]["default"] == p.default
    assert info["schedules"]["vp"]["eps_s"]["default"] == 1e-3
    assert info["samplers"]["dpm_adaptive"]["options"]["rtol"]["default"] == 0.05
    assert info["family_process"] == {"sd15": "ve", "sdxl": "ve", "flow": "flow", "flux": "flow"}
    assert all(math.isfinite(v) for v in info["sd_sigma_table"])
