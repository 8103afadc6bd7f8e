"""Failover before the first byte, ejection, retry budget, readiness and draining, against fake pools (no Ray)."""

from __future__ import annotations

import json

import pytest

from fleet.config import FailoverSpec, parse_fleet
from gateway import errors
from gateway.fleet_state import FleetState
from gateway.metrics import GatewayMetrics
from gateway.outliers import OutlierDetector
from gateway.responses import CHAT, TEXT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import build_router, load_routing_config
from tests.unit.test_service import Clock, FakeStream
from workers.errors import ContextLengthExceeded, EngineFailure
from workers.protocol import PoolRequest, RelayItem, ReplicaStats

MODEL = "m"
POOL = {"hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
        "engine_args": {"max_batch": 8}, "max_ongoing_requests": 8}
FLEET = parse_fleet({"pools": [{"name": "a", **POOL}, {"name": "b", **POOL}]})
BODY = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 3}).encode()
STREAM_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                          "stream": True}).encode()


class BreakAfter(FakeStream):
    """Yields ``ok`` items, then raises ``exc``."""

    def __init__(self, items, ok: int, exc: Exception):
        super().__init__(items)
        self._ok, self._exc = ok, exc

    async def __anext__(self):
        if self._ok == 0:
            raise self._exc
        self._ok -= 1
        return await super().__anext__()


class FlakyPools:
    """Pool ``name`` fails as ``failures[name]`` says: an exception before the first item, or (n, exc) after n items."""

    def __init__(self, failures: dict | None = None):
        self.failures = failures or {}
        self.calls: list[str] = []
        self.streams: list[FakeStream] = []

    def stream(self, pool: str, request: PoolRequest, replica=""):
        self.calls.append(pool)
        n = request.params.max_tokens
        items = [RelayItem(f"{pool}{i} ", 5, i + 1, "length" if i == n - 1 else None) for i in range(n)]
        failure = self.failures.get(pool)
        if isinstance(failure, tuple):
            s = BreakAfter(items, *failure)
        else:
            s = FakeStream(items, failure)
        self.streams.append(s)
        return s


def make(pools, policy="least-load", failover: FailoverSpec | None = None, poll=("a", "b")):
    clock = Clock()
    state = FleetState(FLEET.pools, clock=clock, outliers=OutlierDetector(2.0, 60.0, clock))
    for name in poll:
        state.record_stats(name, ReplicaStats(f"{name}1", max_model_len=4096))
    router = build_router(load_routing_config({"policy": policy}), clock=clock)
    metrics = GatewayMetrics()
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, metrics, clock=clock,
                                failover=failover)
    return service, state, metrics, clock


def _pool_order(service) -> list[str]:
    _, _, _, decision = service.plan(TEXT, BODY, {})
    return [r.name for r in decision.ranked]


def _metric(metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _body(response) -> str:
    return "".join([chunk async for chunk in response.body_iterator])


async def test_a_pool_failing_before_the_first_byte_is_retried_on_the_next_and_ejected():
    service, state, metrics, _ = make(FlakyPools())
    first, second = _pool_order(service)
    service.pools.failures = {first: EngineFailure("replica died")}
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.status_code == 200 and resp.headers["x-hetserve-pool"] == second
    assert service.pools.calls == [first, second]
    assert all(r.in_flight == 0 for r in state.pools.values())
    fleet = {p.name: p for p in state.describe()}
    assert fleet[first].healthy is False and fleet[first].ready is True
    assert fleet[first].ejected_for_s == 2.0 and "replica died" in fleet[first].ejection_reason
    assert fleet[second].healthy is True
    assert _metric(metrics, "hetserve_retries_total", model=MODEL, failed_pool=first) == 1
    assert _metric(metrics, "hetserve_pool_ejected", pool=first) == 1
    # The ejected pool is skipped by the next request.
    await service.handle(TEXT, BODY, {}, "rid2")
    assert service.pools.calls[-1] == second


async def test_a_whole_response_broken_midway_is_retried_too():
    service, _, _, _ = make(FlakyPools())
    first, second = _pool_order(service)
    service.pools.failures = {first: (1, EngineFailure("engine died"))}
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert json.loads(resp.body)["choices"][0]["text"] == f"{second}0 {second}1 {second}2 "


async def test_client_errors_are_not_retried_and_do_not_eject():
    service, state, _, _ = make(FlakyPools())
    first, _ = _pool_order(service)
    service.pools.failures = {first: ContextLengthExceeded("too long", param="prompt")}
    with pytest.raises(ContextLengthExceeded):
        await service.handle(TEXT, BODY, {}, "rid")
    assert service.pools.calls == [first]
    assert all(p.healthy for p in state.describe())


async def test_attempts_are_bounded_and_the_last_error_is_answered():
    pools = FlakyPools({"a": EngineFailure("a down"), "b": EngineFailure("b down")})
    service, _, _, _ = make(pools, failover=FailoverSpec(max_attempts=2))
    with pytest.raises(EngineFailure):
        await service.handle(TEXT, BODY, {}, "rid")
    assert sorted(pools.calls) == ["a", "b"]
    pools.calls.clear()
    service2, _, _, _ = make(pools, failover=FailoverSpec(max_attempts=1))
    with pytest.raises(EngineFailure) as info:
        await service2.handle(TEXT, BODY, {}, "rid")
    assert len(pools.calls) == 1 and errors.error_body(info.value).status == 503


async def test_the_retry_budget_caps_retries_at_a_share_of_requests():
    pools = FlakyPools({"a": EngineFailure("a down"), "b": EngineFailure("b down")})
    spec = FailoverSpec(retry_budget_ratio=0.2, retry_budget_min=0, retry_budget_window_s=10)
    service, _, metrics, _ = make(pools, failover=spec)
    for i in range(10):  # the fake clock stands still: one window
        with pytest.raises(EngineFailure):
            await service.handle(TEXT, BODY, {}, f"r{i}")
    assert len(pools.calls) == 10 + 2  # 20 % of ten requests may be retried
    assert _metric(metrics, "hetserve_retries_denied_total", model=MODEL) == 8


def test_ejection_grows_while_a_pool_keeps_failing_and_resets_after_success():
    clock = Clock()
    od = OutlierDetector(2.0, 5.0, clock)
    assert od.failure("a", "x") and od.describe("a")["ejected_for_s"] == 2.0
    assert not od.failure("a", "late report of the same outage")
    clock.now += 2.0
    assert not od.ejected("a")
    od.failure("a", "x")
    assert od.describe("a")["ejected_for_s"] == 4.0
    clock.now += 4.0
    od.failure("a", "x")
    assert od.describe("a")["ejected_for_s"] == 5.0  # capped
    clock.now += 5.0
    od.success("a")
    od.failure("a", "x")
    assert od.describe("a")["ejected_for_s"] == 2.0 and od.describe("a")["ejections"] == 4


async def test_when_every_pool_of_a_model_is_ejected_routing_ignores_ejection():
    service, state, _, _ = make(FlakyPools())
    state.outliers.failure("a", "x")
    state.outliers.failure("b", "x")
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.status_code == 200


async def test_a_stream_broken_after_its_first_bytes_ends_with_an_error_event_and_done():
    service, state, metrics, _ = make(FlakyPools())
    first, _ = _pool_order(service)
    service.pools.failures = {first: (2, EngineFailure("engine died"))}
    resp = await service.handle(CHAT, STREAM_BODY, {}, "rid")
    events = [e.removeprefix("data: ") for e in (await _body(resp)).split("\n\n") if e]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "pool_unavailable"
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == f"{first}0 "
    assert _metric(metrics, "hetserve_streams_broken_total", model=MODEL, pool=first) == 1
    assert state.outliers.ejected(first)
    assert service.active == 0 and all(r.in_flight == 0 for r in state.pools.values())


async def test_pools_that_never_answered_a_poll_get_503_starting_with_retry_after():
    service, state, _, _ = make(FlakyPools(), poll=())
    with pytest.raises(errors.PoolsStarting) as info:
        await service.handle(TEXT, BODY, {}, "rid")
    err = errors.error_body(info.value)
    assert err.status == 503 and err.headers["Retry-After"] == "5"
    assert "starting" in err.payload["error"]["message"] and err.payload["error"]["code"] == "pools_starting"
    assert [p.starting for p in state.describe()] == [True, True]
    state.record_stats("b", ReplicaStats("b1"))
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.headers["x-hetserve-pool"] == "b"


async def test_draining_refuses_new_requests_and_counts_streams_until_they_end():
    service, _, _, _ = make(FlakyPools())
    resp = await service.handle(CHAT, STREAM_BODY, {}, "rid")
    assert service.active == 1  # the stream is still open
    service.draining = True
    with pytest.raises(errors.ShuttingDown) as info:
        await service.handle(TEXT, BODY, {}, "rid2")
    assert errors.error_body(info.value).status == 503
    await _body(resp)
    assert service.active == 0


async def test_a_request_cancelled_because_its_client_left_ejects_no_pool():
    class TaskCancelledError(Exception):
        """What Ray raises into the gateway when Serve cancels a request whose client disconnected."""

    TaskCancelledError.__module__ = "ray.exceptions"
    service, state, metrics, _ = make(FlakyPools())
    first, _ = _pool_order(service)
    service.pools.failures = {first: TaskCancelledError("cancelled")}
    with pytest.raises(TaskCancelledError) as info:
        await service.handle(TEXT, BODY, {}, "rid")
    assert errors.error_body(info.value).status == 499
    assert service.pools.calls == [first]  # not retried elsewhere
    assert all(p.healthy for p in state.describe())
    assert _metric(metrics, "hetserve_pool_failures_total", pool=first) == 0


async def test_a_failed_pool_is_not_retried_on_its_other_replica():
    pools = FlakyPools()
    service, state, _, _ = make(pools, poll=())
    for name, replicas in (("a", ("a1", "a2")), ("b", ("b1",))):
        for r in replicas:  # a reports two replicas with endpoints: it is ranked per replica
            state.record_stats(name, ReplicaStats(r, max_model_len=4096, endpoint=f"http://10.0.0.1:1/{r}"))
    state.record_stats("a", ReplicaStats("a2", running=1))
    state.record_stats("b", ReplicaStats("b1", running=2))
    _, _, _, decision = service.plan(TEXT, BODY, {})
    assert [(r.name, r.replica) for r in decision.ranked] == [("a", "a1"), ("a", "a2"), ("b", "")]
    pools.failures = {"a": EngineFailure("every replica of a died")}
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.status_code == 200 and resp.headers["x-hetserve-pool"] == "b"
    assert pools.calls == ["a", "b"]  # max_attempts 2: b, not a's second replica
