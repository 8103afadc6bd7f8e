"""The oracle LP on instances solvable by hand, and as a bound on simulated runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fleet.config import load_fleet
from fleet.profiles import engine_figures, operating_point
from sim import Workload, oracle_bound, simulate, solve_bound

# Pool A: 1 J/token, 100 tokens/s; pool B: 2 J/token, 1000 tokens/s; 10 s windows.
ENERGY = np.array([[1.0], [2.0]])
CAPACITY = np.array([[100.0], [1000.0]])


def test_cheap_pool_fills_first_then_the_rest_spills():
    joules, served, x = solve_bound(np.array([[1500.0]]), ENERGY, CAPACITY, 10.0, lag=0)
    # A serves its 1000 tokens, B the other 500: 1000 + 1000 J for 1500 tokens.
    assert served == pytest.approx(1500)
    assert joules == pytest.approx(2000)
    assert x[:, 0, 0] == pytest.approx([1000, 500])


def test_a_window_of_lag_lets_the_cheap_pool_catch_up():
    joules, served, x = solve_bound(np.array([[1500.0]]), ENERGY, CAPACITY, 10.0, lag=1)
    assert joules == pytest.approx(1500) and served == pytest.approx(1500)
    assert x[0, 0].sum() == pytest.approx(1500)


def test_each_class_has_its_own_lag():
    demand = np.array([[1500.0], [500.0]])  # two classes, both arriving in window 0
    energy, capacity = np.repeat(ENERGY, 2, axis=1), np.repeat(CAPACITY, 2, axis=1)
    # Class 0 may not wait: the cheap pool's 1000 tokens of window 0 go to it and B takes its other 500;
    # class 1 waits for window 1 on the cheap pool. 1000 + 2 × 500 + 500 J.
    joules, served, x = solve_bound(demand, energy, capacity, 10.0, lag=np.array([0, 1]))
    assert served == pytest.approx(2000) and joules == pytest.approx(2500)
    assert x[:, 0, 1] == pytest.approx([0, 0])
    # The other way round everything fits on the cheap pool; one lag for both would give 2000 J too.
    assert solve_bound(demand, energy, capacity, 10.0, lag=np.array([1, 0]))[0] == pytest.approx(2000)
    assert solve_bound(demand, energy, capacity, 10.0, lag=1)[0] == pytest.approx(2000)


def test_a_class_a_pool_cannot_run_goes_elsewhere():
    energy = np.array([[1.0, np.inf], [2.0, 3.0]])
    capacity = np.array([[1000.0, 0.0], [1000.0, 1000.0]])
    joules, served, _ = solve_bound(np.array([[100.0], [100.0]]), energy, capacity, 10.0, lag=0)
    assert joules == pytest.approx(100 * 1.0 + 100 * 3.0) and served == pytest.approx(200)


def test_overload_serves_what_fits():
    joules, served, _ = solve_bound(np.array([[20000.0]]), ENERGY, CAPACITY, 10.0, lag=0)
    assert served == pytest.approx(11000) and joules == pytest.approx(1000 + 20000)


def test_bound_is_below_every_policy():
    specs = load_fleet()[0].pools
    w = Workload.synthetic("meta-llama/Llama-3.1-8B-Instruct", 1500, 15.0, lengths="mixed", seed=3)
    bound = oracle_bound(specs, w)
    assert bound.status == "optimal" and bound.served_share == pytest.approx(1.0, abs=1e-3)
    for policy in ("efficiency", "least-load", "round-robin"):
        r = simulate(specs, w, {"policy": policy})
        assert bound.j_per_token_attributed <= r.j_per_token_attributed
    assert bound.j_per_token_total > bound.j_per_token_attributed


def test_per_window_energy_and_the_concurrency_cap():
    # Window-dependent energy: the cheap pool costs 3 J/token in window 0, 1 after.
    energy = np.array([[[3.0, 1.0]], [[2.0, 2.0]]])
    joules, served, _ = solve_bound(np.array([[100.0, 100.0]]), energy, CAPACITY, 10.0, lag=0)
    assert served == pytest.approx(200) and joules == pytest.approx(100 * 2.0 + 100 * 1.0)
    # On a light trace the cap (batches arrivals can fill) binds: a tighter bound, still below policies.
    specs = load_fleet()[0].pools
    w = Workload.synthetic("meta-llama/Llama-3.1-8B-Instruct", 300, 2.0, lengths="chat", seed=3)
    w = w.with_default_slo(500, 50)
    loose, tight = oracle_bound(specs, w), oracle_bound(specs, w, concurrency=True)
    assert tight.concurrency and not loose.concurrency
    assert tight.j_per_token_attributed > 1.2 * loose.j_per_token_attributed
    for policy in ("latency", "efficiency"):
        assert tight.j_per_token_attributed <= simulate(specs, w, {"policy": policy}).j_per_token_attributed


def test_each_request_is_held_to_its_own_target_not_its_class_loosest():
    # Half the requests are tight (TPOT 15 ms: only small batches qualify), half relaxed.
    # Grouped by length alone the relaxed target would stand for both halves.
    specs = load_fleet()[0].pools
    w = Workload.synthetic("meta-llama/Llama-3.1-8B-Instruct", 600, 6.0, lengths="chat", seed=5)
    tight = np.arange(len(w)) % 2 == 0
    mixed = dataclasses.replace(w, slo_ttft_ms=np.full(len(w), 2000.0),
                                slo_tpot_ms=np.where(tight, 15.0, 200.0))
    relaxed = dataclasses.replace(mixed, slo_tpot_ms=np.full(len(w), 200.0))
    b_mixed, b_relaxed = oracle_bound(specs, mixed), oracle_bound(specs, relaxed)
    assert b_mixed.classes == 2 * b_relaxed.classes
    assert b_mixed.j_per_token_attributed > 1.05 * b_relaxed.j_per_token_attributed
    assert b_mixed.j_per_token_attributed <= simulate(specs, mixed, {"policy": "latency"}).j_per_token_attributed


def _at_once(n: int, ttft_ms: float, tpot_ms: float, gap_s: float = 0.0) -> Workload:
    """``n`` chat requests (256 in, 256 out) ``gap_s`` apart, all with the same targets."""
    return Workload(np.arange(n) * gap_s, np.zeros(n, dtype=np.int32), ("meta-llama/Llama-3.1-8B-Instruct",),
                    np.full(n, 256), np.full(n, 256), np.full(n, ttft_ms), np.full(n, tpot_ms))


def test_a_burst_is_served_by_its_deadline_not_whenever():
    # 1,000 requests at once is 256,000 tokens: minutes of the whole fleet. An interactive
    # deadline (0.5 s + 256 × 40 ms) leaves some unservable; a relaxed one serves all on the H100.
    specs = load_fleet()[0].pools
    tight, relaxed = oracle_bound(specs, _at_once(1000, 500, 40)), oracle_bound(specs, _at_once(1000, 60_000, 150))
    assert tight.served_share < 0.9
    assert relaxed.served_share == pytest.approx(1.0, abs=1e-6)
    assert relaxed.j_per_token_attributed <= tight.j_per_token_attributed


def test_requests_that_never_overlap_fill_no_batch():
    # One request every 100 s: the cap allows batch 1 only, so the bound is the cheapest pool's batch-1 figure.
    specs = load_fleet()[0].pools
    w = _at_once(20, 500, 40, gap_s=100.0)
    batch_one = min(op.attributed_j_per_token for s in specs
                    if (f := engine_figures(s)) and w.models[0] in s.models
                    and (op := operating_point(f.hardware, f.model, 1, 256, 256, f.max_batch)))
    assert oracle_bound(specs, w, concurrency=True).j_per_token_attributed == pytest.approx(batch_one)
    assert oracle_bound(specs, w).j_per_token_attributed < batch_one / 10


def test_a_missing_target_never_makes_the_bound_stricter():
    # A TTFT target alone sets no deadline: such requests may wait until the trace's end, so the
    # bound serves at least what it serves when a TPOT target is added.
    specs = load_fleet()[0].pools
    both = oracle_bound(specs, _at_once(1000, 60_000, 150))
    ttft_only = oracle_bound(specs, _at_once(1000, 60_000, float("nan")))
    assert ttft_only.served_share >= both.served_share - 1e-9
    assert ttft_only.served_share == pytest.approx(1.0, abs=1e-6)
