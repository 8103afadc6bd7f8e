"""The gateway's request flow against fake pools (no Ray): fan-out, SSE, usage, errors, accounting."""

from __future__ import annotations


import asyncio
import dataclasses
import json

import pytest
from starlette.requests import ClientDisconnect

from gateway import errors
from fleet.config import parse_fleet
from gateway.fleet_state import FleetState
from gateway.metrics import GatewayMetrics
from gateway.responses import CHAT, TEXT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import build_router, load_routing_config
from workers.errors import ContextLengthExceeded
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry

MODEL = "m"
FLEET = parse_fleet({
    "pools": [
        {"name": "a", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
         "engine_args": {"max_batch": 8}, "max_ongoing_requests": 8},
    ]
})


class FakeStream:
    """A pool stream (``gateway.service.PoolStream``): async iteration, ``ready()`` and ``cancel()``.

    ``burst`` items arrive together: ``ready()`` hands over up to ``burst - 1`` behind the one awaited."""

    def __init__(self, items, fail_first: Exception | None = None, burst: int = 1):
        self._items = list(items)
        self._fail_first = fail_first
        self.burst = burst
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.sleep(0)
        if self._fail_first is not None:
            raise self._fail_first
        if not self._items:
            raise StopAsyncIteration
        return self._items.pop(0)

    def ready(self):
        taken, self._items = self._items[: self.burst - 1], self._items[self.burst - 1:]
        return taken

    def cancel(self):
        self.cancelled = True


class FakePools:
    def __init__(self, fail: Exception | None = None):
        self.requests: list[PoolRequest] = []
        self.streams: list[FakeStream] = []
        self.fail = fail

    def stream(self, pool: str, request: PoolRequest, replica=""):
        self.requests.append(request)
        tag = request.request_id.rsplit("-", 1)[1]
        n = request.params.max_tokens
        items = [RelayItem(f"{tag}.{i} ", 5, i + 1, "length" if i == n - 1 else None) for i in range(n)]
        items[-1] = items[-1]._replace(telemetry=Telemetry(1.5, 0.1, ReplicaStats("r1")))
        s = FakeStream(items, self.fail)
        self.streams.append(s)
        return s


def make_service(pools: FakePools, router=None):
    state = FleetState(FLEET.pools)
    state.record_stats("a", ReplicaStats("r1", max_model_len=4096))
    router = router or build_router(load_routing_config({"policy": "least-load"}))
    finished = []
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, GatewayMetrics(), finished.append)
    return service, state, finished


async def _body(response) -> str:
    return "".join([chunk async for chunk in response.body_iterator])


async def test_n_times_prompts_fan_out_with_exact_usage():
    pools = FakePools()
    service, state, finished = make_service(pools)
    body = json.dumps({"model": MODEL, "prompt": ["x", "y"], "n": 2, "max_tokens": 3, "seed": 10}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    out = json.loads(resp.body)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2, 3]
    assert out["choices"][3]["text"] == "3.0 3.1 3.2 "
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    assert [r.params.seed for r in pools.requests] == [10, 11, 10, 11]
    assert state.pools["a"].in_flight == 0
    assert finished[0].energy_j == pytest.approx(6.0) and finished[0].shape.sequences == 4
    assert resp.headers["x-hetserve-pool"] == "a"


async def test_stream_chunks_role_then_content_usage_and_done():
    service, state, _ = make_service(FakePools())
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    resp = await service.handle(CHAT, body, {}, "rid")
    assert state.pools["a"].in_flight == 1  # committed: first items arrived
    events = [e.removeprefix("data: ") for e in (await _body(resp)).split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "0.0 "}
    assert chunks[1]["choices"][0]["delta"] == {"content": "0.1 "}
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    assert chunks[0]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    assert state.pools["a"].in_flight == 0


@pytest.mark.parametrize("n", [1, 3])
async def test_items_that_arrive_together_go_out_in_one_write_in_order(n):
    class Bursty(FakePools):
        def stream(self, pool, request, replica=""):
            s = super().stream(pool, request)
            s.burst = 4  # four items per network read, the finishing one among them
            return s

    pools = Bursty()
    service, state, finished = make_service(pools)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 6, "n": n, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    writes = [w async for w in resp.body_iterator]
    events = [json.loads(e.removeprefix("data: ")) for w in writes[:-1] for e in w.split("\n\n") if e]
    assert writes[-1] == "data: [DONE]\n\n"
    assert len(writes) - 1 < len(events) == 6 * n  # fewer writes than events: bursts went out together
    for i in range(n):
        texts = [c["choices"][0]["text"] for c in events if c["choices"][0]["index"] == i]
        assert texts == [f"{i}.{k} " for k in range(6)]
    assert [c["choices"][0]["finish_reason"] for c in events].count("length") == n
    assert state.pools["a"].in_flight == 0 and finished[0].output_tokens == 6 * n


async def test_engine_error_before_first_token_is_typed_and_frees_the_pool():
    pools = FakePools(fail=ContextLengthExceeded("too long", param="prompt"))
    service, state, _ = make_service(pools)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2, "n": 2}).encode()
    with pytest.raises(ContextLengthExceeded) as info:
        await service.handle(TEXT, body, {}, "rid")
    err = errors.error_body(info.value)
    assert err.status == 400 and err.payload["error"]["code"] == "context_length_exceeded"
    assert state.pools["a"].in_flight == 0
    assert all(s.cancelled for s in pools.streams)


class Unfinished(FakePools):
    """A pool whose streams end before their finishing item (a replica that went away mid-answer)."""

    def stream(self, pool, request, replica=""):
        s = super().stream(pool, request)
        s._items.pop()
        return s


async def test_a_pool_stream_that_ends_unfinished_is_the_pools_failure_not_a_short_answer():
    service, state, finished = make_service(Unfinished())
    body = {"model": MODEL, "prompt": "x", "max_tokens": 3}
    with pytest.raises(errors.Unavailable):
        await service.handle(TEXT, json.dumps(body).encode(), {}, "rid")
    assert state.pools["a"].in_flight == 0 and not finished

    resp = await service.handle(TEXT, json.dumps({**body, "stream": True}).encode(), {}, "rid2")
    events = [e.removeprefix("data: ") for e in (await _body(resp)).split("\n\n") if e]
    assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] == ["0.0 ", "0.1 "]
    assert json.loads(events[2])["error"]["code"] == "pool_unavailable" and events[3] == "[DONE]"
    assert state.pools["a"].in_flight == 0 and not finished


class Silent(FakePools):
    """A pool that never sends a first item (a stalled replica); its first request only."""

    def stream(self, pool, request, replica=""):
        s = super().stream(pool, request)
        if len(self.streams) == 1:
            async def never():
                await asyncio.Event().wait()

            s.__anext__ = never  # instance attribute: awaited through the service's explicit __anext__ calls
        return s


async def test_a_request_cancelled_before_its_first_byte_does_not_hold_back_the_recorded_trace(tmp_path):
    from gateway.trace_recorder import TraceRecorder

    service, state, _ = make_service(Silent())
    service.recorder = TraceRecorder(tmp_path / "trace.jsonl")
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2}
    stalled = asyncio.create_task(service.handle(TEXT, json.dumps(body).encode(), {}, "stalled"))
    await asyncio.sleep(0.05)
    stalled.cancel()  # the client left while the pool had not answered
    with pytest.raises(asyncio.CancelledError):
        await stalled
    await service.handle(TEXT, json.dumps(body).encode(), {}, "later")
    assert service.recorder.flush() == 1  # the later request is written, not held behind the cancelled one
    assert state.pools["a"].in_flight == 0


class PromisingRouter:
    """The least-load router, its decisions promising a TPOT (as ``predicted-slo`` makes them)."""

    def __init__(self, tpot_ms: float):
        self.inner = build_router(load_routing_config({"policy": "least-load"}))
        self.tpot_ms = tpot_ms

    def choose(self, shape, pools):
        return dataclasses.replace(self.inner.choose(shape, pools), promised_tpot_ms=self.tpot_ms)


async def test_a_stream_in_flight_shows_its_promised_tpot_to_the_router_until_it_ends():
    pools = FakePools()
    service, state, _ = make_service(pools, PromisingRouter(40.0))
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 50, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")  # the router's promise, whatever the request's target
    it = resp.body_iterator
    await it.__anext__()
    assert state.snapshot(MODEL)[0].tightest_tpot_ms == 40.0
    async for _ in it:
        pass
    assert state.snapshot(MODEL)[0].tightest_tpot_ms is None


async def test_a_stream_whose_client_left_before_the_first_byte_still_frees_the_pool():
    pools = FakePools()
    service, state, _ = make_service(pools, PromisingRouter(40.0))
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 50, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    assert state.pools["a"].in_flight == 1 and state.snapshot(MODEL)[0].tightest_tpot_ms == 40.0

    async def gone(message):
        raise OSError("connection reset")  # the client left: the status line cannot be sent

    async def receive():
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnect):
        await resp({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, gone)
    assert state.pools["a"].in_flight == 0 and state.snapshot(MODEL)[0].tightest_tpot_ms is None
    assert pools.streams[0].cancelled


async def test_client_disconnect_cancels_pool_streams_and_counts_as_cancelled_not_error():
    pools = FakePools()
    service, state, _ = make_service(pools)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 50, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    it = resp.body_iterator
    await it.__anext__()
    await it.aclose()  # what Starlette does when the client goes away
    assert pools.streams[0].cancelled
    assert state.pools["a"].in_flight == 0
    labels = {"model": MODEL, "pool": "a"}
    requests = service.metrics.registry.get_sample_value
    assert requests("hetserve_requests_total", {**labels, "status": "cancelled"}) == 1.0
    assert requests("hetserve_requests_total", {**labels, "status": "error"}) is None


async def test_a_whole_answer_whose_client_left_counts_as_cancelled():
    class Stalls(FakeStream):
        """The first item, then nothing more: the engine is still at it (``waiting`` once asked for more)."""

        waiting = False

        async def __anext__(self):
            if not self._items:
                self.waiting = True
                await asyncio.Event().wait()
            return await super().__anext__()

    class Slow(FakePools):
        def stream(self, pool, request, replica=""):
            s = Stalls(super().stream(pool, request)._items[:1])
            self.streams[-1] = s
            return s

    pools = Slow()
    service, state, _ = make_service(pools)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 5}).encode()
    task = asyncio.ensure_future(service.handle(TEXT, body, {}, "rid"))
    while not (pools.streams and pools.streams[0].waiting):  # committed, and waiting for its next item
        await asyncio.sleep(0)
    task.cancel()  # Serve cancels the request when its client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pools.streams[0].cancelled and state.pools["a"].in_flight == 0
    labels = {"model": MODEL, "pool": "a", "status": "cancelled"}
    assert service.metrics.registry.get_sample_value("hetserve_requests_total", labels) == 1.0


@pytest.mark.parametrize(
    "body,status,param",
    [
        ({"model": "other", "prompt": "x"}, 404, "model"),
        ({"model": MODEL, "prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 10_000_000}, 400, "max_tokens"),  # the prompt alone fits
        ({"model": MODEL, "prompt": "word " * 5000, "max_tokens": 10}, 400, "prompt"),
        ({"model": MODEL, "prompt": "x", "top_p": 0}, 400, "top_p"),
        ({"model": MODEL, "prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),  # a known field of the wrong type
        ({"model": MODEL, "prompt": "x", "stream": "yes"}, 400, "stream"),
        ({"model": MODEL, "prompt": "x", "n": True}, 400, "n"),
        ({"model": MODEL, "prompt": "x", "stop": ["a", 1]}, 400, "stop.1"),  # the element, not the union's first try
        ({"model": MODEL, "prompt": [[1, "a"]]}, 400, "prompt.0.1"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 2.0}, 400, "max_tokens"),
        ({"model": MODEL, "prompt": "x", "temperature": float("nan")}, 400, None),  # NaN is no JSON value
        ({"model": MODEL, "prompt": "x", "seed": 2**63}, 400, "seed"),  # OpenAI's seed is a signed int64
        ({"model": MODEL, "prompt": "x", "seed": -(2**63) - 1}, 400, "seed"),
    ],
)
async def test_bad_requests_map_to_openai_errors(body, status, param):
    """A known field of the wrong type is refused as OpenAI refuses it; an integer still passes for a number."""
    service, _, _ = make_service(FakePools())
    with pytest.raises(Exception) as info:
        await service.handle(TEXT, json.dumps(body).encode(), {}, "rid")
    err = errors.error_body(info.value)
    assert err.status == status
    assert err.payload["error"]["param"] == param
    if err.payload["error"]["code"] == "context_length_exceeded":
        assert err.payload["error"]["message"].startswith("This model's maximum context length is 4096 tokens.")


async def test_slo_headers_reach_the_shape_and_bad_ones_are_rejected():
    service, _, _ = make_service(FakePools())
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2}).encode()
    _, _, shape, _ = service.plan(TEXT, body, {"x-hetserve-slo-ttft-ms": "250", "x-hetserve-slo-tpot-ms": "40"})
    assert (shape.slo_ttft_ms, shape.slo_tpot_ms) == (250.0, 40.0)
    for bad in ("soon", "nan", "inf", "-inf", "1e400", "0"):
        with pytest.raises(errors.InvalidRequest) as info:
            service.plan(TEXT, body, {"x-hetserve-slo-ttft-ms": bad})
        assert info.value.param == "x-hetserve-slo-ttft-ms"


async def test_a_pin_to_a_pool_that_does_not_serve_the_model_names_the_header():
    service, _, _ = make_service(FakePools())
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2}).encode()
    _, _, _, decision = service.plan(TEXT, body, {"x-hetserve-pool-pin": "a"})
    assert decision.best.name == "a"
    service.state.pools["a"].spec.models.remove(MODEL)  # a pool of the fleet that serves another model
    try:
        with pytest.raises(errors.InvalidRequest) as info:
            service.plan(TEXT, body, {"x-hetserve-pool-pin": "a"})
    finally:
        service.state.pools["a"].spec.models.append(MODEL)
    assert info.value.param == "x-hetserve-pool-pin" and "does not serve 'm'" in info.value.message


async def test_the_route_reason_header_spells_its_signs_in_ascii():
    # No pool has a forecast, so the predicted-SLO filter drops them all and the reason says what it
    # needed: "ttft ≤ 1 ms", which a header carried as "ttft ? 1 ms".
    router = build_router(load_routing_config({"policy": "slo-energy"}))
    service, _, _ = make_service(FakePools(), router)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2}).encode()
    resp = await service.handle(TEXT, body, {"x-hetserve-slo-ttft-ms": "1"}, "rid")
    reason = resp.headers["x-hetserve-route-reason"]
    assert "ttft <= 1 ms" in reason and "?" not in reason


class Clock:
    """A fake clock the test moves by hand (``now``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _WholeAnswers(FakePools):
    """Each sequence answers whole after ``answer_s`` of the fake clock; its telemetry says when (``first_s``,
    None: the replica did not say) its first token came and how long it ran (``engine_s``)."""

    def __init__(self, clock: Clock, answer_s: float, engine_s: float, first_s: float | None):
        super().__init__()
        self.clock, self.answer_s, self.engine_s, self.first_s = clock, answer_s, engine_s, first_s

    def stream(self, pool, request, replica=""):
        s = super().stream(pool, request)
        text = "".join(i.text for i in s._items)
        n = len(s._items)
        answer = RelayItem(text, 5, n, "length", Telemetry(1.0, self.engine_s, ReplicaStats("r1"), self.first_s))
        clock, answer_s = self.clock, self.answer_s

        class Whole(FakeStream):
            async def __anext__(self):
                item = await super().__anext__()
                clock.now += answer_s
                return item

        whole = Whole([answer])
        self.streams[-1] = whole
        return whole


def _whole_service(pools, clock):
    state = FleetState(FLEET.pools)
    state.record_stats("a", ReplicaStats("r1", max_model_len=4096))
    router = build_router(load_routing_config({"policy": "least-load"}))
    finished = []
    metrics = GatewayMetrics()
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, metrics, finished.append,
                                clock=clock)
    return service, finished, metrics


async def test_a_whole_answers_first_token_time_comes_from_its_replica_not_its_arrival():
    clock = Clock()
    # the answer arrives 2.0 s after the request; the replica ran 1.9 s and had its first token at 0.3 s:
    # 1.6 s of decoding before the answer left, so the first token came 0.4 s after the request
    pools = _WholeAnswers(clock, answer_s=2.0, engine_s=1.9, first_s=0.3)
    service, finished, metrics = _whole_service(pools, clock)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 5}).encode()
    await service.handle(TEXT, body, {}, "rid")
    (f,) = finished
    assert f.timed and f.e2e_s == pytest.approx(2.0) and f.ttft_s == pytest.approx(0.4)
    ttft_sum = metrics.registry.get_sample_value("hetserve_time_to_first_token_seconds_sum",
                                                 {"model": MODEL, "pool": "a"})
    assert ttft_sum == pytest.approx(0.4)


async def test_a_whole_answer_without_its_first_token_time_teaches_no_latency():
    clock = Clock()
    pools = _WholeAnswers(clock, answer_s=2.0, engine_s=1.9, first_s=None)
    service, finished, metrics = _whole_service(pools, clock)
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 5}).encode()
    await service.handle(TEXT, body, {}, "rid")
    (f,) = finished
    assert not f.timed  # the gateway's profiles and forecast skip it (Gateway._finished)
    labels = {"model": MODEL, "pool": "a"}
    assert metrics.registry.get_sample_value("hetserve_time_to_first_token_seconds_count", labels) in (None, 0.0)
    assert metrics.registry.get_sample_value("hetserve_requests_total", {**labels, "status": "ok"}) == 1.0


async def test_a_chat_request_without_max_tokens_fits_the_context_left_and_lets_the_engine_fit_it():
    pools = FakePools()
    service, _, _ = make_service(pools)  # pool "a" runs 4096 tokens
    counter = service.counters[MODEL]
    content = "word " * 3200
    prompt = counter.count_prompt({"messages": [{"role": "user", "content": content}]})
    assert 4096 - 256 < prompt < 4096  # less room than the output estimate
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]}).encode()
    _, _, shape, _ = service.plan(CHAT, body, {})
    assert shape.max_new_tokens == 4096 - prompt
    await service.handle(CHAT, body, {}, "rid")
    (request,) = pools.requests
    assert request.params.fit_context and request.params.max_tokens == 512  # the engine lowers it
    limited = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}).encode()
    await service.handle(CHAT, limited, {}, "rid2")
    assert not pools.requests[-1].params.fit_context and pools.requests[-1].params.max_tokens == 7


async def test_an_integer_passes_for_a_number():
    service, _, _ = make_service(FakePools())
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2, "temperature": 1, "top_p": 1}).encode()
    req, _, _, _ = service.plan(TEXT, body, {})
    assert (req.temperature, req.top_p) == (1.0, 1.0)


_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize("messages,extra,param", [
    ([{"role": "user"}], {}, "messages.0"),
    ([{"role": "user", "content": None}], {}, "messages.0"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "4"}], {}, "messages.1"),  # answers no call
    ([{"role": "user", "content": "hi"}, {"role": "assistant"}], {}, "messages.1"),
    ([{"role": "user", "content": "hi"}], {"tools": []}, "tools"),
])
async def test_incomplete_chat_messages_are_refused_as_openai_refuses_them(messages, extra, param):
    service, _, _ = make_service(FakePools())
    with pytest.raises(errors.InvalidRequest) as info:
        service.plan(CHAT, json.dumps({"model": MODEL, "messages": messages, **extra}).encode(), {})
    assert info.value.param == param


async def test_an_assistant_message_may_carry_tool_calls_instead_of_content():
    service, _, _ = make_service(FakePools())
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [_CALL]},
                {"role": "tool", "content": "4", "tool_call_id": "c1"}]
    req, _, _, _ = service.plan(CHAT, json.dumps({"model": MODEL, "messages": messages}).encode(), {})
    assert [m["role"] for m in req.message_dicts()] == ["user", "assistant", "tool"]


def test_a_validation_error_names_the_first_failing_field_not_a_deeper_one_elsewhere():
    from fastapi.exceptions import RequestValidationError

    exc = RequestValidationError([
        {"loc": ("body", "policy"), "msg": "bad policy", "type": "value_error"},
        {"loc": ("body", "plugins", 0, "parameters", "margin"), "msg": "bad margin", "type": "value_error"},
    ])
    err = errors.to_api_error(exc)
    assert err.param == "policy" and err.message == "policy: bad policy"
