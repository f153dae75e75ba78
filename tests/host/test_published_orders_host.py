"""The deviations from the published orders that tests/test_samplers_convergence.py
lists as the core's too ("core:" in the reason): the core's own function,
on the same grids, the same Gaussian data and the same exact solution,
stays below the published order as ours does. Where the host lacks the
function (the March-2024 host has no ipndm, er_sde, ...) the case is
skipped with its name; the newest core has every one."""
import pytest
import torch

import corekit as K
import helpers as H
import test_samplers_convergence as C
from hostlib import comfy  # noqa: F401  (fixture)
from test_sampler_parity import _host_fn, _run_host

CASES = [(name, process) for (name, proc), (_, reason) in C.DEVIATIONS.items()
         if reason.startswith("core") for process in ((proc,) if proc else ("ve", "flow"))]


@pytest.mark.parametrize("name,process", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_core_shows_the_same_deviation(comfy, name, process):
    # "core (ipndm): ..." names the core function that shows it (the core has
    # no plms; PLMS's equal-step weights are iPNDM's)
    reason = C.DEVIATIONS[(name, process)] if (name, process) in C.DEVIATIONS \
        else C.DEVIATIONS[(name, None)]
    twin = reason[1][len("core ("):reason[1].index(")")] if reason[1].startswith("core (") \
        else name
    fn = _host_fn(comfy, twin)
    if fn is None:
        pytest.skip(f"this host has no {twin}")
    ms = K.model_sampling(comfy, "flow" if process == "flow" else "eps")
    if ms is None:
        pytest.skip("this host has no flow models")
    data, x, exact = C.setup(process)
    want, reason = C.expected_order(process, name)
    published = C.PUBLISHED_ORDER[name][0]
    ns = C.steps_for(process, name, want)
    errs = []
    for n in ns:
        sig = H.schedule(process, n)
        model = K.HostModel(data.denoiser, ms)
        if name != "er_sde":
            out = _run_host(comfy, twin, fn, model, x.clone(), sig, 0.0, None)
        else:  # ER-SDE has no eta: its ODE is the noise scale f(s) = s, without noise
            torch.set_default_dtype(torch.float64)
            try:
                out = fn(model, x.clone(), sig, disable=True, extra_args={}, s_noise=0.0,
                         noise_scaler=lambda s: s)
            finally:
                torch.set_default_dtype(torch.float32)
        errs.append(H.rel_err(out, exact))
    orders = H.observed_orders(errs)
    report = (f"the core's {name} ({process}): steps {ns} -> errors "
              f"{['%.3g' % e for e in errs]}, orders {['%.2f' % o for o in orders]}; "
              f"published {published}, ours listed at {want}: {reason}")
    assert errs[-1] < 0.1, report
    assert orders[-1] < 0.9 * published, report
    assert orders[-1] >= 0.8 * want, report
