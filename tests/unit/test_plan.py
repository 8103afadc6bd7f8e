"""The fleet planner: a hand-solvable program, NPU length limits, the CLI's fleet."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.config import load_fleet
from fleet.trace import TraceRecord, write_trace
from plan.cli import plan_main
from plan.milp import PlanInfeasible, solve
from plan.planner import build_problem
from sim.workload import Workload

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_cost_optimum_known_by_hand():
    # one class of 10 req/s; A: 4 req/s for $3/h, B: 3 req/s for $2/h.
    # 3×A = $9 (12 req/s); 4×B = $8 (12); 1A+2B = $7 (10) is the optimum.
    sol = solve(np.array([10.0]), np.array([[4.0, 3.0]]), np.ones((1, 2)), np.array([3.0, 2.0]),
                np.array([10.0, 10.0]), utilisation=1.0)
    assert sol.replicas.tolist() == [1, 2]
    assert sol.share.sum() == pytest.approx(1.0)


def test_energy_objective_prefers_low_idle_draw():
    # same capacity, A idles at 100 W, B at 10 W but costs more: energy picks B.
    sol = solve(np.array([2.0]), np.array([[4.0, 4.0]]), np.ones((1, 2)), np.array([1.0, 5.0]),
                np.array([100.0, 10.0]), objective="energy", utilisation=1.0)
    assert sol.replicas.tolist() == [0, 1]


def test_class_without_feasible_hardware_is_infeasible():
    with pytest.raises(PlanInfeasible):
        solve(np.array([1.0]), np.array([[0.0, 0.0]]), np.ones((1, 2)), np.ones(2), np.ones(2))


def _workload(prompt: int, output: int, n: int = 40) -> Workload:
    return Workload.from_records(TraceRecord(t=i * 0.1, model=MODEL, prompt_tokens=prompt, output_tokens=output)
                                 for i in range(n))


def test_lengths_beyond_npu_compiled_limit_excluded():
    base, _ = load_fleet()
    p = build_problem(_workload(30000, 100), base, ["h100", "atom"])
    j = p.hardware.index("atom")
    assert p.cap[:, j].max() == 0  # atom cannot hold 30k tokens
    assert p.cap[:, p.hardware.index("h100")].min() > 0


def test_cli_writes_loadable_fleet(tmp_path):
    trace = tmp_path / "t.jsonl"
    write_trace(trace, [TraceRecord(t=i * 0.2, model=MODEL, prompt_tokens=200, output_tokens=50)
                        for i in range(60)])
    out = tmp_path / "fleet.yaml"
    rc = plan_main(["--trace", str(trace), "--slo-ttft-ms", "2000", "--slo-tpot-ms", "200",
                    "--hardware", "h100,rngd", "--out", str(out)])
    assert rc == 0
    fleet, _ = load_fleet(out)
    assert {p.hardware for p in fleet.pools} <= {"h100", "rngd"}
    assert sum(p.replicas for p in fleet.pools) >= 1
    assert fleet.pools[0].models == [MODEL]
    assert "Where classes go" in (tmp_path / "fleet.html").read_text()


def test_simulation_grows_an_underprovisioned_plan():
    from plan.planner import plan_for
    from plan.verify import verify

    base, _ = load_fleet()
    rng = np.random.default_rng(0)
    w = Workload.from_records(TraceRecord(t=float(t), model=MODEL, prompt_tokens=500, output_tokens=200,
                                          slo_ttft_ms=2000, slo_tpot_ms=100)
                              for t in np.sort(rng.uniform(0, 20, 400)))
    problem = build_problem(w, base, ["rngd"])
    thin = plan_for(problem, ["rngd"], "cost", "thin", utilisation=8.0)  # far over capacity
    v = verify(thin, problem, base, w, target=0.95, max_rounds=6)
    assert v.added and set(v.added) == {"rngd"}
    assert v.plan.replicas["rngd"] == thin.replicas["rngd"] + len(v.added)
    assert v.plan.cost_per_hour > thin.cost_per_hour
