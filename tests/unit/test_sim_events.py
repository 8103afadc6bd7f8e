"""Simulation events: heap order, tie-breaks, ids and clocks owned per simulation."""

from __future__ import annotations

import pytest

from routing.config import load_routing_config
from sim import Arrival, EventQueue, Simulation, StepDone, Workload, build_pools
from fleet.config import load_fleet

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_events_pop_by_time_then_completions_first_then_fifo():
    q = EventQueue()
    late = q.push(Arrival(2.0, 0))
    a1 = q.push(Arrival(1.0, 1))
    a2 = q.push(Arrival(1.0, 2))
    done = q.push(StepDone(1.0, None, None))
    assert [q.pop() for _ in range(len(q))] == [done, a1, a2, late]


def test_each_queue_numbers_its_own_events():
    q1, q2 = EventQueue(), EventQueue()
    ids1 = [q1.push(Arrival(0.0, i)).id for i in range(3)]
    ids2 = [q2.push(Arrival(0.0, i)).id for i in range(2)]
    assert ids1 == [0, 1, 2] and ids2 == [0, 1]


def _sim(n, rate, seed=0):
    pools = build_pools(load_fleet()[0].pools, [MODEL])
    workload = Workload.synthetic(MODEL, n, rate, seed=seed)
    return Simulation(workload, pools, load_routing_config({"policy": "round-robin"}))


def test_two_simulations_share_no_clock_ids_or_router_state():
    first = _sim(40, 5.0).run()
    second = _sim(40, 5.0)
    assert second.now() == 0.0 and len(second.queue) == 0
    second.run()
    assert first.now() == second.now() > 0  # same inputs, same virtual end
    assert (first.state.pool == second.state.pool).all()  # round-robin cursors were not shared
    assert first.queue._ids is not second.queue._ids
    assert first.router.clock() == first.now()


def test_virtual_time_is_not_wall_time():
    sim = _sim(200, 2.0).run()
    assert sim.now() > 90  # about 100 s of arrivals
    assert sim.wall_s < sim.now()  # orders of magnitude apart; speed itself is bench/bench_simulator.py's


def test_dispatch_delay_adds_to_ttft_and_counts_in_flight_from_routing():
    import numpy as np
    from sim.workload import Workload as W

    # Two requests 1 ms apart on an idle fleet, least-load: with a 50 ms request path the
    # second is routed while the first is still on its way, so it must see that load.
    w = W(np.array([0.0, 0.001]), np.zeros(2, dtype=np.int32), (MODEL,), np.array([64, 64]),
          np.array([4, 4]), np.full(2, np.nan), np.full(2, np.nan))
    config = load_routing_config({"policy": "least-load"})
    runs = [Simulation(w, build_pools(load_fleet()[0].pools, [MODEL]), config, dispatch_s=d).run()
            for d in (0.0, 0.05)]
    assert runs[1].state.ttft[0] - runs[0].state.ttft[0] == pytest.approx(0.05)
    assert runs[1].state.pool[0] != runs[1].state.pool[1]  # the first was in flight already
    with pytest.raises(ValueError):
        Simulation(w, build_pools(load_fleet()[0].pools, [MODEL]), config, dispatch_s=-1.0)
