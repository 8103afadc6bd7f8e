"""The data path over HTTP, without Ray: pool endpoints (workers.http_endpoint) served by uvicorn, the
gateway's relay (gateway.relay_http), the service, and the official ``openai`` client in front."""

from __future__ import annotations

import asyncio
import socket
import uuid

import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request

from fleet.config import TimeoutSpec, parse_fleet
from gateway import errors
from gateway.fleet_state import FleetState
from gateway.metrics import GatewayMetrics
from gateway.outliers import OutlierDetector
from gateway.relay_http import HttpPools
from gateway.responses import CHAT, TEXT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import build_router, load_routing_config
from workers.errors import ContextLengthExceeded, EngineFailure
from workers.http_endpoint import EndpointApp, EndpointServer
from workers.engine import SamplingParams
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry

MODEL = "m"
TOKEN = "secret"
POOL = {"hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
        "engine_args": {"max_batch": 8}, "max_ongoing_requests": 8}
FLEET = parse_fleet({"pools": [{"name": "a", **POOL}]})


class FakeEngine:
    """A replica's relay-item generator; what it does depends on the prompt."""

    def __init__(self, name: str):
        self.name = name
        self.requests: list[PoolRequest] = []
        self.aborted = asyncio.Event()

    async def generate(self, request: PoolRequest):
        self.requests.append(request)
        prompt = request.prompt if request.prompt is not None else request.messages[-1]["content"]
        if prompt == "too long":
            raise ContextLengthExceeded("the prompt is too long", param="prompt")
        n = request.params.max_tokens
        try:
            if prompt == "slow":  # a queued sequence, or a long whole answer: nothing for a while
                await asyncio.sleep(30)
            texts = [f"{self.name}{i} " for i in range(n)]
            if request.whole and prompt in ("progress", "stall"):  # as workers.relay.whole with progress_s
                for i in range(2):
                    await asyncio.sleep(0.05)
                    yield RelayItem("", 3, i + 1, None)
                if prompt == "stall":  # the engine stops advancing: no more progress, no answer
                    await asyncio.sleep(30)
            if request.whole:
                yield RelayItem("".join(texts), 3, n, "length", _telemetry(self.name))
                return
            for i, text in enumerate(texts):
                if prompt == "break" and i == 2:
                    raise EngineFailure("the engine died")
                if prompt == "endless":
                    await asyncio.sleep(0.01)
                last = i == n - 1 and prompt != "endless"
                yield RelayItem(text, 3, i + 1, "length" if last else None, _telemetry(self.name) if last else None)
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.set()
            raise


def _telemetry(name: str) -> Telemetry:
    return Telemetry(0.5, 0.01, ReplicaStats(name, running=1, output_tokens_total=7))


async def _listening(server: uvicorn.Server) -> None:
    """Wait until ``server`` accepts connections (the timeout only stops a hang)."""
    async def started():
        while not server.started:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(started(), timeout=60)


@pytest.fixture
async def replicas():
    """Two replicas' endpoints on loopback; stopped after the test."""
    servers, engines = [], {}
    for name in ("r1", "r2"):
        engine = FakeEngine(name)
        engines[name] = engine
        servers.append(EndpointServer(EndpointApp(name, TOKEN, engine.generate), "127.0.0.1").start())
    for s in servers:
        await _listening(s.server)
    yield engines, servers
    for s in servers:
        await s.stop()


def _pools(servers, token: str = TOKEN) -> HttpPools:
    pools = HttpPools({"a": None}, token)
    for name, s in zip(("r1", "r2"), servers):
        pools.add("a", name, s.url)
    return pools


def _request(prompt: str, max_tokens: int = 4, whole: bool = False) -> PoolRequest:
    from workers.engine import SamplingParams

    return PoolRequest(uuid.uuid4().hex, SamplingParams(max_tokens=max_tokens), prompt=prompt, whole=whole)


async def test_a_stream_relays_every_item_in_order_with_telemetry_last(replicas):
    _, servers = replicas
    pools = _pools(servers)
    items = [i async for i in pools.stream("a", _request("hi", 5))]
    assert [i.output_tokens for i in items] == [1, 2, 3, 4, 5] and items[-1].finish_reason == "length"
    assert items[-1].telemetry.energy_j == 0.5 and items[-1].telemetry.stats.output_tokens_total == 7
    assert all(e.in_flight == 0 for e in pools.endpoints["a"].values())
    await pools.aclose()


async def test_items_read_together_are_handed_over_by_ready_in_order(replicas):
    _, servers = replicas
    pools = _pools(servers)
    stream = pools.stream("a", _request("hi", 50))
    batches = []
    async for item in stream:
        batches.append([item, *stream.ready()])
    assert [i.output_tokens for b in batches for i in b] == list(range(1, 51))
    assert max(len(b) for b in batches) > 1  # the replica wrote them all before the relay read: few reads
    assert batches[-1][-1].telemetry is not None
    assert all(e.in_flight == 0 for e in pools.endpoints["a"].values())
    await pools.aclose()


async def test_a_whole_answer_is_one_item(replicas):
    _, servers = replicas
    pools = _pools(servers)
    items = [i async for i in pools.stream("a", _request("hi", 3, whole=True))]
    assert len(items) == 1 and items[0].output_tokens == 3 and items[0].telemetry is not None
    await pools.aclose()


async def test_the_endpoint_turns_nagle_off_on_the_connections_it_accepts(replicas):
    # With Nagle on, a whole answer's body (a second small write) waits for the ACK of its head, which
    # the gateway delays (about 40 ms on Linux). Off uvloop, asyncio turns Nagle off only on sockets
    # created as TCP; this test's loop is asyncio's own.
    _, servers = replicas
    pools = _pools(servers)
    [_ async for _ in pools.stream("a", _request("hi", 1, whole=True), "r1")]
    accepted = [conn.transport.get_extra_info("socket") for conn in servers[0].server.server_state.connections]
    assert accepted and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)
    await pools.aclose()


async def test_a_connection_is_reused_and_one_left_idle_too_long_is_replaced(replicas, monkeypatch):
    from gateway import pool_http

    _, servers = replicas
    pools = _pools(servers)
    opened = []
    connect = pool_http.PoolHttp.connect

    async def counted(self, *args):
        opened.append(args[0])
        return await connect(self, *args)

    monkeypatch.setattr(pool_http.PoolHttp, "connect", counted)
    for _ in range(3):
        assert len([_ async for _ in pools.stream("a", _request("hi", 2), "r1")]) == 2
    assert len(opened) == 1
    monkeypatch.setattr(pool_http, "IDLE_S", 0.0)
    assert len([_ async for _ in pools.stream("a", _request("hi", 2), "r1")]) == 2
    assert len(opened) == 2
    await pools.aclose()


async def test_errors_before_the_first_item_arrive_typed(replicas):
    _, servers = replicas
    pools = _pools(servers)
    with pytest.raises(ContextLengthExceeded) as info:
        await pools.stream("a", _request("too long")).__anext__()
    assert info.value.param == "prompt"
    with pytest.raises(EngineFailure, match="bad internal token"):
        await _pools(servers, token="wrong").stream("a", _request("hi")).__anext__()
    await pools.aclose()


async def test_an_error_after_the_first_item_ends_the_stream_typed(replicas):
    _, servers = replicas
    pools = _pools(servers)
    seen = []
    with pytest.raises(EngineFailure, match="engine died"):
        async for item in pools.stream("a", _request("break", 5)):
            seen.append(item.text)
    assert len(seen) == 2
    await pools.aclose()


async def test_a_dead_or_replaced_replica_is_dropped_and_the_sequence_runs_on_another(replicas):
    engines, servers = replicas
    pools = _pools(servers)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # closed once the block ends: nobody listens there
    for broken, url in (("dead", f"http://127.0.0.1:{dead_port}/generate/dead"),
                        ("moved", servers[0].url.replace("/r1", "/moved"))):  # r1 answers there: 404
        pools.endpoints["a"].pop("r2", None)
        pools.add("a", broken, url)
        pools.endpoints["a"]["r1"].in_flight = 10  # the broken one has fewer: it is picked first
        items = [i async for i in pools.stream("a", _request("hi", 2))]
        assert items[-1].finish_reason == "length"
        assert set(pools.endpoints["a"]) == {"r1"} and pools.endpoints["a"]["r1"].in_flight == 10
    pools.endpoints["a"].clear()
    with pytest.raises(EngineFailure, match="no replica"):
        await pools.stream("a", _request("hi")).__anext__()
    await pools.aclose()


async def _cut_server(lines: int):
    """A replica that dies mid-answer: status 200, ``lines`` relay items, then the connection is cut."""
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(lines):
            line = b'[" cut", 3, %d, null]\n' % (i + 1)
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
        await writer.drain()
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/generate/cut"


async def test_a_replica_cut_mid_stream_fails_the_sequence_and_is_dropped(replicas):
    _, servers = replicas
    cut, url = await _cut_server(2)
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "cut", url)
    seen = []
    with pytest.raises(EngineFailure, match="broke the stream"):
        async for item in pools.stream("a", _request("hi", 5)):
            seen.append(item.text)
    assert seen == [" cut", " cut"] and "cut" not in pools.endpoints["a"]
    cut.close()
    await pools.aclose()


async def test_a_replica_cut_before_its_first_item_is_skipped_for_another(replicas):
    _, servers = replicas
    cut, url = await _cut_server(0)
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "cut", url)
    pools.add("a", "r1", servers[0].url)
    pools.endpoints["a"]["r1"].in_flight = 10  # the cut one has fewer: it is picked first
    items = [i async for i in pools.stream("a", _request("hi", 3))]
    assert [i.text for i in items] == ["r10 ", "r11 ", "r12 "] and set(pools.endpoints["a"]) == {"r1"}
    cut.close()
    await pools.aclose()


async def test_a_stream_cancelled_while_opening_yields_nothing_and_keeps_its_replica(replicas):
    engines, servers = replicas
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "dead", f"http://127.0.0.1:{dead_port}/generate/dead")
    pools.add("a", "r1", servers[0].url)
    pools.endpoints["a"]["r1"].in_flight = 10  # the dead one is tried first, then r1
    stream = pools.stream("a", _request("endless", 10_000))
    opening = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)  # connecting to the dead one
    stream.cancel()
    with pytest.raises(StopAsyncIteration):  # the dead one refused, and no other replica was asked
        await opening
    assert engines["r1"].requests == [] and pools.endpoints["a"]["r1"].in_flight == 10
    await pools.aclose()


@pytest.mark.parametrize("whole", [False, True])
async def test_a_stream_cancelled_before_its_first_item_aborts_the_engine_request_at_once(replicas, whole):
    engines, servers = replicas
    pools = _pools(servers)
    stream = pools.stream("a", _request("slow", 3, whole=whole), "r1")
    opening = asyncio.ensure_future(stream.__anext__())
    while not engines["r1"].requests:
        await asyncio.sleep(0.01)
    stream.cancel()  # a sibling sequence failed: this one's engine request must stop, not run 30 s
    await asyncio.wait_for(engines["r1"].aborted.wait(), 5)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(opening, 5)
    assert set(pools.endpoints["a"]) == {"r1", "r2"} and pools.endpoints["a"]["r1"].in_flight == 0
    await pools.aclose()


async def _endless_on_r1(servers):
    """Pools knowing r1 only, and an endless stream there past its first item."""
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "r1", servers[0].url)
    stream = pools.stream("a", _request("endless", 10_000))
    await stream.__anext__()
    return pools, stream


async def test_a_read_cut_short_by_cancel_ends_the_stream_and_keeps_the_replica(replicas):
    # what a sibling's pump meets when the client of an n > 1 request leaves: cancel() closes its connection
    _, servers = replicas
    pools, stream = await _endless_on_r1(servers)
    stream.ready()
    reading = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)  # waiting in the network read
    stream.cancel()
    with pytest.raises(StopAsyncIteration):
        await reading
    assert "r1" in pools.endpoints["a"]
    await pools.aclose()


async def _raw_server(answer: bytes):
    """A replica that answers every request with ``answer`` (raw HTTP), then closes the connection."""
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/generate/raw"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 two hundred\r\n\r\n",  # a status line that is no HTTP
    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",  # a stream that ends before its first item
    b'HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n["half",',  # ... or in the middle of it
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 7\r\n\r\n[1, 2]\n",  # an error that is no error body
    b'HTTP/1.1 502 Bad Gateway\r\ncontent-length: 24\r\n\r\n{"error": "bad gateway"}',
])
async def test_a_replica_answering_what_is_no_relay_is_the_pools_failure_not_an_internal_error(answer):
    server, url = await _raw_server(answer)
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "raw", url)
    with pytest.raises(EngineFailure):  # 503 to the client (gateway.errors), and the service fails over
        await pools.stream("a", _request("hi", 3)).__anext__()
    server.close()
    await pools.aclose()


async def test_cancel_closes_the_connection_and_the_replica_aborts_the_sequence(replicas):
    engines, servers = replicas
    pools, stream = await _endless_on_r1(servers)
    await stream.__anext__()
    stream.cancel()
    await asyncio.wait_for(engines["r1"].aborted.wait(), 5)
    await asyncio.sleep(0.05)
    assert pools.endpoints["a"]["r1"].in_flight == 0
    await pools.aclose()


@pytest.mark.parametrize("whole", [True, False])
async def test_a_gateway_that_leaves_before_the_first_item_aborts_the_engine_request(replicas, whole):
    engines, servers = replicas
    pools = HttpPools({"a": None}, TOKEN)
    pools.add("a", "r1", servers[0].url)
    opening = asyncio.create_task(pools.stream("a", _request("slow", whole=whole)).__anext__())
    while not engines["r1"].requests:  # until the replica has the request and waits on its engine
        await asyncio.sleep(0.01)
    opening.cancel()  # the client left: the gateway closes its connection
    await asyncio.wait_for(engines["r1"].aborted.wait(), 5)
    await pools.aclose()


# -- the whole path through the official openai client --------------------------------------------


@pytest.fixture
async def gateway(replicas):
    """The service over the two replicas, behind a plain FastAPI app on uvicorn (no Ray)."""
    _, servers = replicas
    state = FleetState(FLEET.pools, outliers=OutlierDetector(2.0, 60.0))
    state.record_stats("a", ReplicaStats("r1", max_model_len=4096))
    router = build_router(load_routing_config({"policy": "least-load"}))
    pools = _pools(servers)
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, GatewayMetrics())
    api = FastAPI()
    errors.install_handlers(api)

    @api.post("/v1/chat/completions")
    async def chat(request: Request):
        return await service.handle(CHAT, await request.body(), request.headers, uuid.uuid4().hex)

    @api.post("/v1/completions")
    async def completions(request: Request):
        return await service.handle(TEXT, await request.body(), request.headers, uuid.uuid4().hex)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(api, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await _listening(server)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="x", max_retries=0)
    yield client, service
    await client.close()
    server.should_exit = True
    await task
    await pools.aclose()


def _chat(prompt: str):
    return [{"role": "user", "content": prompt}]


async def test_openai_client_streams_n_choices_with_usage(gateway):
    client, service = gateway
    stream = await client.chat.completions.create(
        model=MODEL, messages=_chat("hi"), max_tokens=4, n=2, stream=True, stream_options={"include_usage": True}
    )
    text: dict[int, str] = {0: "", 1: ""}
    usage = None
    async for chunk in stream:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
        usage = chunk.usage or usage
    assert all(len(t.split()) == 4 for t in text.values())
    assert usage.completion_tokens == 8 and usage.prompt_tokens == 3
    assert service.active == 0


async def test_openai_client_non_streaming_is_one_round_trip_per_sequence(gateway, replicas):
    client, _ = gateway
    engines, _ = replicas
    done = await client.completions.create(model=MODEL, prompt="hi", max_tokens=3, n=2)
    assert [c.index for c in done.choices] == [0, 1] and done.usage.completion_tokens == 6
    sent = [r for e in engines.values() for r in e.requests]
    assert len(sent) == 2 and all(r.whole for r in sent)


async def test_openai_client_gets_a_typed_error_before_the_first_byte(gateway):
    client, _ = gateway
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=MODEL, messages=_chat("too long"), max_tokens=4, stream=True)
    assert info.value.code == "context_length_exceeded"


async def test_openai_client_sees_an_error_event_after_the_first_byte(gateway):
    client, service = gateway
    stream = await client.chat.completions.create(model=MODEL, messages=_chat("break"), max_tokens=5, stream=True)
    got = ""
    with pytest.raises(openai.APIError, match="engine died"):
        async for chunk in stream:
            got += chunk.choices[0].delta.content or ""
    assert len(got.split()) == 2
    assert service.active == 0


async def test_a_client_that_disconnects_aborts_the_engine_sequence(gateway, replicas):
    client, service = gateway
    engines, _ = replicas
    stream = await client.chat.completions.create(model=MODEL, messages=_chat("endless"), max_tokens=2000, stream=True)
    async for _ in stream:
        break
    await stream.close()
    aborted = [asyncio.create_task(e.aborted.wait()) for e in engines.values()]
    done, pending = await asyncio.wait(aborted, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    assert done


def test_a_request_crosses_the_wire_with_its_typed_sampling_params():
    from workers import wire

    params = SamplingParams(max_tokens=4, logit_bias={50: -100.0, 7: 2.5}, presence_penalty=0.5)
    request = PoolRequest("r-0", params, prompt="hi")
    back = wire.decode_request(wire.encode_request(request))
    assert back == request
    assert all(isinstance(t, int) for t in back.params.logit_bias)


def test_a_chat_request_with_tools_and_a_schema_crosses_the_wire_whole():
    from workers import wire

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = SamplingParams(max_tokens=8, stop=["\n\n"], response_format={"type": "json_schema",
                            "json_schema": {"name": "w", "schema": schema}}, logprobs=2)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": schema}}]
    request = PoolRequest("r-1", params, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                          whole=True, progress_s=2.5, trace={"traceparent": "00-ab-cd-01"}, tools=tools,
                          tool_choice={"type": "function", "function": {"name": "weather"}}, parallel_tool_calls=False)
    assert wire.decode_request(wire.encode_request(request)) == request


def test_bytes_that_are_no_relay_item_are_the_pools_failure_not_an_internal_error():
    from workers import wire

    for line in (b"<html>", b"[1, 2]", b"7", b'["t", 1, 1, null, {"energy_j": 1}]'):
        with pytest.raises(EngineFailure, match="no relay item"):
            wire.decode_item(line)
    with pytest.raises(EngineFailure, match="the pool failed"):  # an error the pool did not describe
        wire.decode_item(b'{"error": "no object"}')
    assert errors.to_api_error(EngineFailure("x")).status == 503
    with pytest.raises(ContextLengthExceeded):  # a well-formed error line keeps its type
        wire.decode_item(b'{"error": {"kind": "ContextLengthExceeded", "message": "long", "param": "prompt"}}')


async def test_a_long_whole_answer_arrives_after_its_progress_items_and_a_stalled_one_times_out(gateway, replicas):
    client, service = gateway
    engines, _ = replicas
    done = await client.completions.create(model=MODEL, prompt="progress", max_tokens=3)
    assert done.choices[0].text.split() and len(done.choices[0].text.split()) == 3
    assert done.usage.completion_tokens == 3
    sent = [r for e in engines.values() for r in e.requests]
    assert sent[-1].whole and sent[-1].progress_s == service.timeouts.idle_s / 2
    # A stalled engine is found by the idle bound, not after max_tokens × idle_s.
    service.timeouts = TimeoutSpec(first_token_s=5.0, idle_s=0.5)
    with pytest.raises(openai.APIStatusError) as info:
        await client.completions.create(model=MODEL, prompt="stall", max_tokens=500)
    assert info.value.status_code == 504 and "no token for 0.5 s" in info.value.message
    await asyncio.wait_for(_any_aborted(engines), 30)  # the relay closed its connection: the engine stopped
    assert service.active == 0


async def _any_aborted(engines) -> None:
    while not any(e.aborted.is_set() for e in engines.values()):
        await asyncio.sleep(0.05)
