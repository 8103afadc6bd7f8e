"""Named policies: what each ranks first, and how it explains itself."""

from __future__ import annotations

import random

import pytest

from routing import Cell, EfficiencyProfile, PoolState, RequestShape, Router, build_policy

MODEL = "llama-8b"


def _pool(name, *, j=None, cost=None, ttft=None, tpot=None, load=0, capacity=64, price=0.0, thr=None):
    """One pool whose cells at seq 512 are the same at every batch."""
    cells = [Cell(b, 512, j_per_token=j, cost_per_mtok=cost, ttft_ms=ttft, tpot_ms=tpot,
                  throughput_tok_s=thr, samples=10, provenance="calibrated")
             for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    profile = EfficiencyProfile(name, "hw", MODEL, cells=cells)
    return PoolState(name, "hw", (MODEL,), running=load, capacity=capacity,
                     price_per_hour=price, profile=profile)


# rngd: frugal but slow per token; h100: fast, costlier in joules; l40s: cheapest per token
FLEET = [
    _pool("h100", j=0.6, cost=0.30, ttft=80, tpot=15),
    _pool("rngd-a", j=0.3, cost=0.25, ttft=150, tpot=140),
    _pool("l40s", j=0.5, cost=0.10, ttft=120, tpot=40),
]
SHAPE = RequestShape(MODEL, 300, 100)


def _choose(policy, shape=SHAPE, fleet=FLEET, **kw):
    return Router(build_policy(policy, **kw), clock=lambda: 0.0).choose(shape, fleet)


def _order(decision):
    return [r.name for r in decision.ranked]


def test_efficiency_ranks_by_joules_per_token():
    assert _order(_choose("efficiency")) == ["rngd-a", "l40s", "h100"]


def test_cost_ranks_by_cost_per_token():
    d = _choose("cost")
    assert _order(d) == ["l40s", "rngd-a", "h100"]
    assert d.reason.startswith("l40s: 0.1 USD/Mtok")


def test_cost_falls_back_to_hourly_price_over_throughput():
    fleet = [_pool("a", price=3.6, thr=1000.0), _pool("b", price=3.6, thr=2000.0)]
    d = _choose("cost", fleet=fleet)
    assert _order(d) == ["b", "a"] and d.ranked[1].scores["cost"] == pytest.approx(0.5)


def test_latency_ranks_by_predicted_end_to_end_time():
    d = _choose("latency")
    assert _order(d) == ["h100", "l40s", "rngd-a"]
    assert "1.58 s predicted" in d.reason  # 80 + 100 × 15 ms


def test_slo_efficiency_skips_pool_whose_tpot_misses_target():
    d = _choose("slo-efficiency", slo_ttft_ms=2000, slo_tpot_ms=100)
    assert _order(d) == ["l40s", "h100"]  # rngd-a is more efficient but 140 ms/token
    assert d.reason.endswith("skipped rngd-a (slo)")
    assert d.policy == "slo-efficiency"


def test_request_slo_overrides_configured_target():
    loose = RequestShape(MODEL, 300, 100, slo_tpot_ms=200)
    assert _choose("slo-efficiency", shape=loose, slo_tpot_ms=100).best.name == "rngd-a"


def test_slo_efficiency_falls_back_to_best_latency_and_says_so():
    d = _choose("slo-efficiency", slo_tpot_ms=5)
    assert d.best.name == "h100" and d.policy == "latency"
    assert d.reason.startswith("no pool meets SLO tpot ≤ 5 ms for slo-efficiency, fell back to latency: h100")


def test_least_load_prefers_free_capacity():
    fleet = [_pool("a", load=48), _pool("b", load=16), _pool("c", load=32)]
    d = _choose("least-load", fleet=fleet)
    assert _order(d) == ["b", "c", "a"] and d.best.scores == {"load": 0.75}


def test_round_robin_cycles_through_pools():
    router = Router(build_policy("round-robin"))
    firsts = [router.choose(SHAPE, FLEET).best.name for _ in range(6)]
    assert firsts == ["h100", "l40s", "rngd-a"] * 2


def test_random_is_reproducible_with_a_seed():
    def run(seed):
        router = Router(build_policy("random", rng=random.Random(seed)))
        return [router.choose(SHAPE, FLEET).best.name for _ in range(30)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert set(run(7)) == {"h100", "rngd-a", "l40s"}


def test_weights_merge_over_policy_defaults():
    busy = [_pool("rngd-a", j=0.3, load=60), _pool("l40s", j=0.32, load=0)]
    assert _choose("efficiency", fleet=busy).best.name == "rngd-a"
    d = _choose("efficiency", fleet=busy, weights={"load": 1.0})
    assert d.best.name == "l40s" and set(d.best.scores) == {"efficiency", "load"}
    assert 0.0 <= d.best.score <= 1.0


def test_unknown_policy_and_scorer_are_rejected():
    with pytest.raises(ValueError, match="valid: efficiency, cost"):
        build_policy("greedy")
    with pytest.raises(ValueError, match="unknown scorer 'speed'"):
        build_policy("efficiency", weights={"speed": 1.0})
