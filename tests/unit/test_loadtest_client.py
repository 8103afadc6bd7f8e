"""TTFT, ITL and TPOT from a recorded stream, on a scripted clock so the figures are exact."""

import asyncio
import json

import httpx
import pytest

from loadtests import client as client_module
from loadtests.client import Target, send_request
from loadtests.metrics import summarize
from loadtests.result import RequestResult


def _chunk(content):
    return ("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}) + "\n\n").encode()


USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}\n\n'
# (clock time the bytes arrive, bytes). The role-only first chunk carries no content: it is not the first token.
RECORDED = [
    (0.020, b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'),
    (0.050, _chunk("Hel")),
    (0.060, _chunk("lo")),
    (0.080, _chunk(" wor") + _chunk("ld")[:10]),  # two tokens' worth; the next event is split mid-way
    (0.090, _chunk("ld")[10:]),
    (0.095, USAGE + b"data: [DONE]\n\n"),
]


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(client_module.time, "perf_counter", lambda: now[0])
    return now


def _transport(clock, recorded, status=200, headers=None):
    async def handler(request):
        async def body():
            for at, data in recorded:
                clock[0] = 100.0 + at
                yield data

        return httpx.Response(status, headers=headers or {}, content=body())

    return httpx.MockTransport(handler)


async def _send(transport, target=None):
    result = RequestResult(index=0, model="m", scheduled_s=None, prompt_tokens=10)
    async with httpx.AsyncClient(transport=transport) as c:
        return await send_request(c, target or Target(base_url="http://x"), result, "hi", 5, run_start=99.0)


def test_stream_timings_are_hand_computable(clock):
    headers = {"x-hetserve-pool": "npu-rngd", "x-request-id": "req-7"}
    result = asyncio.run(_send(_transport(clock, RECORDED, headers=headers)))
    assert result.ok, result.error
    assert result.sent_s == pytest.approx(1.0)
    assert result.ttft_s == pytest.approx(0.050)
    assert result.itl_s == pytest.approx([0.010, 0.020, 0.010])
    assert result.e2e_s == pytest.approx(0.095)
    assert (result.prompt_tokens, result.output_tokens) == (12, 5)
    assert result.tpot_s == pytest.approx((0.095 - 0.050) / 4)  # 11.25 ms, not the mean ITL
    assert (result.pool, result.request_id) == ("npu-rngd", "req-7")

    summary = summarize([result])
    assert summary.ttft_ms.p50 == pytest.approx(50.0)
    assert summary.itl_ms.mean == pytest.approx(40.0 / 3)
    assert summary.tpot_ms.mean == pytest.approx(11.25)


def test_usage_missing_falls_back_to_content_chunks(clock):
    recorded = [(at, data) for at, data in RECORDED if data is not RECORDED[-1][1]]
    recorded.append((0.095, b"data: [DONE]\n\n"))
    result = asyncio.run(_send(_transport(clock, recorded)))
    assert result.ok
    assert (result.prompt_tokens, result.output_tokens) == (10, 4)


@pytest.mark.parametrize(
    ("recorded", "status", "error_type"),
    [
        ([(0.01, b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')], 429, "http_429"),
        ([(0.01, _chunk("a"))], 200, "incomplete_stream"),
        ([(0.01, b'data: {"error": {"message": "engine died"}}\n\n')], 200, "stream_error"),
        ([(0.01, b"data: {not json\n\n")], 200, "bad_chunk"),
        ([(0.01, b"data: 5\n\n")], 200, "bad_chunk"),
        ([(0.01, b"data: [DONE]\n\n")], 200, "no_output"),
    ],
)
def test_failures_become_error_types(clock, recorded, status, error_type):
    result = asyncio.run(_send(_transport(clock, recorded, status=status)))
    assert result.error_type == error_type
    assert not result.ok
    assert result.status == status


def test_http_error_keeps_the_server_message(clock):
    body = [(0.01, b'{"error": {"message": "slow down", "type": "rate_limit_error"}}')]
    result = asyncio.run(_send(_transport(clock, body, status=429)))
    assert result.error == "slow down"


def test_payload_asks_for_usage_and_ignore_eos():
    chat = Target(endpoint="chat").payload("m", "hi", 7)
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert chat["stream_options"] == {"include_usage": True}
    assert chat["ignore_eos"] is True and chat["max_tokens"] == 7
    completion = Target(endpoint="completions", stream=False).payload("m", "hi", 7)
    assert completion["prompt"] == "hi" and "stream_options" not in completion
    assert Target(api_key="k").request_headers()["authorization"] == "Bearer k"


def test_timeout_and_connect_errors():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200)

    def refuse(request):
        raise httpx.ConnectError("refused")

    slow_result = asyncio.run(_send(httpx.MockTransport(slow), Target(base_url="http://x", timeout_s=0.05)))
    assert slow_result.error_type == "timeout"
    assert asyncio.run(_send(httpx.MockTransport(refuse))).error_type == "connect_error"
