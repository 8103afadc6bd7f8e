"""Policies ranked in simulation on cases small enough to compute by hand.

Two profile-driven pools on H100 hardware (idle 70 W): ``fast`` steps in
10 ms at 270 W (2 J attributed per token at batch 1), ``lean`` in 20 ms at
95 W (0.5 J). Requests of 10 + 5 tokens arrive 1 s apart, so they never
overlap.
"""

from __future__ import annotations

import numpy as np
import pytest

from routing import Cell, EfficiencyProfile
from sim import Workload, simulate
from workers.spec import PoolSpec

MODEL = "m"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _profile(pool, tpot_ms, watts):
    cells = [Cell(b, s, tpot_ms=tpot_ms, ttft_ms=tpot_ms, watts=watts, j_per_token=watts * tpot_ms / 1e3)
             for b in BATCHES for s in (128, 256, 512, 1024)]
    return EfficiencyProfile(pool, "h100", MODEL, cells=cells)


def _spec(name, capacity=8):
    return PoolSpec(name=name, hardware="h100", engine="vllm", models=[MODEL], model="/models/m",
                    max_ongoing_requests=capacity)


PROFILES = {"fast": _profile("fast", 10.0, 270.0), "lean": _profile("lean", 20.0, 95.0)}


def _workload(times, prompt=10, output=5):
    n = len(times)
    return Workload(np.array(times, dtype=float), np.zeros(n, dtype=np.int32), (MODEL,),
                    np.full(n, prompt), np.full(n, output), np.full(n, np.nan), np.full(n, np.nan))


def _run(policy, times=(0.0, 1.0, 2.0, 3.0), caps=(8, 8), **kw):
    specs = [_spec("fast", caps[0]), _spec("lean", caps[1])]
    return simulate(specs, _workload(times, **kw), {"policy": policy}, profiles=PROFILES)


def test_efficiency_sends_everything_to_the_lean_pool():
    r = _run("efficiency")
    assert {p.name: p.requests for p in r.pools} == {"fast": 0, "lean": 4}
    assert r.j_per_token_attributed == pytest.approx(0.5)
    assert r.span_s == pytest.approx(3.1)  # last arrival at 3 s + 5 steps of 20 ms
    assert r.j_per_token_total == pytest.approx((4 * 2.5 + 140 * 3.1) / 20)
    assert r.ttft_ms.p50 == pytest.approx(20.0) and r.tpot_ms.p50 == pytest.approx(20.0)


def test_latency_sends_everything_to_the_fast_pool():
    r = _run("latency")
    assert {p.name: p.requests for p in r.pools} == {"fast": 4, "lean": 0}
    assert r.j_per_token_attributed == pytest.approx(2.0)
    assert r.e2e_ms.p50 == pytest.approx(50.0)


def test_round_robin_alternates_and_averages():
    r = _run("round-robin")
    assert {p.name: p.requests for p in r.pools} == {"fast": 2, "lean": 2}
    assert r.j_per_token_attributed == pytest.approx(1.25)


def test_spillover_then_429_when_every_pool_is_full():
    r = _run("efficiency", times=(0.0, 0.0, 0.0), caps=(1, 1))
    assert {p.name: p.requests for p in r.pools} == {"fast": 1, "lean": 1}
    assert r.rejected["saturated"] == 1 and r.completed == 2
    assert r.slo_attainment == pytest.approx(2 / 3)  # a rejection counts as a miss


def test_too_long_for_every_pool_is_a_400():
    r = _run("efficiency", times=(0.0,), prompt=1000, output=100)
    assert r.rejected["infeasible"] == 1 and r.completed == 0


def test_slo_targets_decide_goodput():
    specs = [_spec("fast"), _spec("lean")]
    w = _workload([0.0, 1.0]).with_default_slo(None, 15.0)  # only the fast pool meets TPOT 15 ms
    eff = simulate(specs, w, {"policy": "efficiency"}, profiles=PROFILES)
    slo = simulate(specs, w, {"policy": "slo-efficiency"}, profiles=PROFILES)
    assert eff.slo_attainment == 0.0 and slo.slo_attainment == 1.0
    assert slo.goodput_rps == pytest.approx(2 / 1.05)


def test_online_learning_moves_cells_to_observed_values():
    from sim import Simulation, build_pools
    from routing.config import load_routing_config

    pools = build_pools([_spec("fast"), _spec("lean")], [MODEL], PROFILES)
    Simulation(_workload([0.0, 1.0, 2.0]), pools, load_routing_config({"policy": "efficiency"}),
               learn=True).run()
    cell = next(p for p in pools if p.name == "lean").profile.lookup(1, 15)
    assert cell.provenance == "online" and cell.samples == 3
    assert cell.j_per_token == pytest.approx(1.9)  # 95 W × 20 ms per token
    assert PROFILES["lean"].lookup(1, 15).samples == 0  # the caller's profile is untouched
