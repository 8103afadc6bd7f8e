"""A pool of several replicas is routed per replica: the gateway's snapshot and
counts, the relay's choice of endpoint, and the simulator, on fake pools."""

from __future__ import annotations

import json

import numpy as np

from fleet.config import parse_fleet
from gateway.fleet_state import STALE_AFTER_S, FleetState
from gateway.metrics import GatewayMetrics
from gateway.relay_http import HttpPools
from gateway.responses import TEXT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import build_router, load_routing_config
from sim import Workload
from sim.pools import build_pools
from sim.simulation import Simulation
from tests.unit.test_service import MODEL, FakePools
from workers.protocol import ReplicaStats

FLEET = parse_fleet({
    "pools": [
        {"name": "a", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
         "engine_args": {"max_batch": 8}, "max_ongoing_requests": 8, "replicas": 2},
    ]
})


def _state(*replicas: str) -> FleetState:
    state = FleetState(FLEET.pools)
    for r in replicas:
        state.record_stats("a", ReplicaStats(r, running=3 if r == "r1" else 0, max_model_len=4096,
                                             endpoint=f"http://10.0.0.1:1/{r}"))
    return state


def test_a_pool_with_two_reachable_replicas_is_offered_one_state_each_with_its_own_counts():
    state = _state("r1", "r2")
    state.acquire("a", 2, prompt_tokens=10, max_new_tokens=5, tpot_target_ms=30.0, replica="r2")
    by = {s.replica: s for s in state.snapshot(MODEL)}
    assert set(by) == {"r1", "r2"} and all(s.name == "a" and s.replicas == 1 for s in by.values())
    assert (by["r1"].running, by["r1"].in_flight, by["r1"].tightest_tpot_ms) == (3, 0, None)
    assert (by["r2"].in_flight, by["r2"].prefill_tokens, by["r2"].decode_tokens) == (2, 20, 10)
    assert by["r2"].tightest_tpot_ms == 30.0 and by["r2"].capacity == 8
    assert state.pools["a"].in_flight == 2  # the pool's own count (/v1/fleet, metrics) sees it too
    state.release("a", 2, 10, 5, 30.0, prefilled=False, replica="r2")
    by = {s.replica: s for s in state.snapshot(MODEL)}
    assert (by["r2"].in_flight, by["r2"].prefilling, by["r2"].tightest_tpot_ms) == (0, 0, None)
    assert state.pools["a"].in_flight == 0


def test_a_replica_the_relay_cannot_reach_is_not_offered_until_it_answers_again():
    state = _state("r1", "r2")
    state.unreachable("a", "r1")
    [whole] = state.snapshot(MODEL)  # one replica left: the pool as a whole
    assert whole.replica == "" and whole.name == "a"
    state.record_stats("a", ReplicaStats("r1"))
    assert {s.replica for s in state.snapshot(MODEL)} == {"r1", "r2"}
    assert [s.replica for s in _state("r1").snapshot(MODEL)] == [""]


def test_a_replica_not_heard_from_for_a_while_is_not_offered_on_its_own():
    now = [0.0]
    state = FleetState(FLEET.pools, clock=lambda: now[0])
    for r in ("r1", "r2"):
        state.record_stats("a", ReplicaStats(r, endpoint=f"http://10.0.0.1:1/{r}"))
    assert {s.replica for s in state.snapshot(MODEL)} == {"r1", "r2"}
    now[0] = 20.0
    state.record_stats("a", ReplicaStats("r2"))  # a finished request's counters: r2 lives
    now[0] = STALE_AFTER_S + 5  # r1 silent since 0 (Serve replaced it, say)
    assert [s.replica for s in state.snapshot(MODEL)] == [""]
    state.record_stats("a", ReplicaStats("r1"))
    assert {s.replica for s in state.snapshot(MODEL)} == {"r1", "r2"}


def test_the_relay_takes_the_replica_the_router_chose_and_reports_one_it_drops():
    dropped = []
    pools = HttpPools({"a": None}, "t", on_unreachable=lambda pool, replica: dropped.append((pool, replica)))
    for r in ("r1", "r2", "r3"):
        pools.add("a", r, f"http://10.0.0.1:1/{r}")
    pools.endpoints["a"]["r2"].in_flight = 50  # power of two would never pick it over an idle one
    assert all(pools.pick("a", set(), prefer="r2").replica == "r2" for _ in range(20))
    assert pools.pick("a", {"r2"}, prefer="r2").replica != "r2"  # tried already: any other
    pools.drop("a", pools.endpoints["a"]["r2"], "refused")
    assert dropped == [("a", "r2")] and pools.pick("a", set(), prefer="r2").replica in {"r1", "r3"}


async def test_the_service_sends_the_request_to_the_chosen_replica_and_counts_it_there():
    class Recording(FakePools):
        def stream(self, pool, request, replica=""):
            self.replicas.append(replica)
            return super().stream(pool, request)

    pools = Recording()
    pools.replicas = []
    state = _state("r1", "r2")
    router = build_router(load_routing_config({"policy": "least-load"}))
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, GatewayMetrics(),
                                lambda finished: None)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 3, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    assert pools.replicas == ["r2"]  # least-load: r1 runs 3 sequences
    assert state.pools["a"].sent_to["r2"].in_flight == 1
    async for _ in resp.body_iterator:
        pass
    assert state.pools["a"].sent_to["r2"].in_flight == 0 and state.pools["a"].in_flight == 0


def test_the_simulator_packs_decoding_on_one_replica_and_spreads_prefills_and_load():
    specs = parse_fleet({"pools": [
        {"name": "h100", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b",
         "models": ["meta-llama/Llama-3.1-8B-Instruct"], "engine_args": {"max_batch": 64},
         "max_ongoing_requests": 64, "replicas": 2},
    ]}).pools

    def shares(policy: str, lengths: str) -> list[float]:
        w = Workload.synthetic("meta-llama/Llama-3.1-8B-Instruct", 300, 3.0, lengths=lengths,
                               seed=2).with_default_slo(2000, 100)
        sim = Simulation(w, build_pools(specs, w.models), load_routing_config({"policy": policy}))
        sim.run()
        [pool] = sim.pools
        for r in pool.replicas:
            assert r.sent.in_flight == 0 and r.sent.decode_tokens == 0
        n = np.array([r.requests for r in pool.replicas], dtype=float)
        return sorted(n / n.sum())

    # Chat prompts are prefilled within a step: one replica takes what its targets allow.
    assert shares("slo-energy", "chat")[1] > 0.85
    # Long documents often arrive while another waits for its prefill there: they go to the other replica.
    assert 0.2 < shares("slo-energy", "long-doc")[0] < 0.45
    assert shares("least-load", "chat")[0] > 0.4  # the fewest sequences: both alike
