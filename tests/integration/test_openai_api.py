"""The official openai client against the live gateway: real vLLM pool and emulated pools."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import EMULATED_MODEL, REAL_MODEL

pytestmark = pytest.mark.engine

BOTH = pytest.mark.parametrize("model", [REAL_MODEL, EMULATED_MODEL])
EMULATED_POOLS = {"h100", "rngd", "atom"}


def test_models_lists_both_models(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {REAL_MODEL, EMULATED_MODEL}
    assert client.models.retrieve(EMULATED_MODEL).id == EMULATED_MODEL


@BOTH
def test_chat_completion_usage_is_exact(client, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=12, extra_body={"ignore_eos": True}
    )
    resp = raw.parse()
    pool = raw.headers["x-hetserve-pool"]
    assert (pool == "cpu-vllm") if model == REAL_MODEL else (pool in EMULATED_POOLS)
    assert raw.headers["x-request-id"]
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 12
    assert resp.usage.prompt_tokens > 3
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 12
    assert resp.choices[0].message.content


@BOTH
def test_streaming_chat_matches_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    text, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert finish == "length"
    assert usage.completion_tokens == 20
    assert "".join(text)


def test_completions_prompt_forms_on_real_engine(client):
    one = client.completions.create(model=REAL_MODEL, prompt="hello", max_tokens=5, extra_body={"ignore_eos": True})
    assert one.usage.completion_tokens == 5
    many = client.completions.create(model=REAL_MODEL, prompt=["a b", "c d e"], max_tokens=4, extra_body={"ignore_eos": True})
    assert [c.index for c in many.choices] == [0, 1]
    assert many.usage.completion_tokens == 8
    ids = client.completions.create(model=REAL_MODEL, prompt=[11, 12, 13, 14, 15], max_tokens=3, extra_body={"ignore_eos": True})
    assert ids.usage.prompt_tokens == 5


def test_n_and_seed_are_reproducible(client):
    kwargs = dict(model=REAL_MODEL, prompt="seeded", max_tokens=8, n=2, seed=7, temperature=1.0, extra_body={"ignore_eos": True})
    a = client.completions.create(**kwargs)
    b = client.completions.create(**kwargs)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert len(a.choices) == 2 and a.usage.completion_tokens == 16


def test_stop_string_ends_emulated_output(client):
    first = client.completions.create(model=EMULATED_MODEL, prompt="stop test", max_tokens=30, seed=3)
    words = first.choices[0].text.split()
    stop_word = words[5]
    stopped = client.completions.create(model=EMULATED_MODEL, prompt="stop test", max_tokens=30, seed=3, stop=[stop_word])
    assert stopped.choices[0].finish_reason == "stop"
    assert stop_word not in stopped.choices[0].text
    assert stopped.usage.completion_tokens < 30


async def test_async_client_concurrent_requests(async_client):
    async def one(i: int):
        r = await async_client.chat.completions.create(
            model=REAL_MODEL if i % 2 else EMULATED_MODEL,
            messages=[{"role": "user", "content": f"request {i}"}],
            max_tokens=6,
            extra_body={"ignore_eos": True},
        )
        return r.usage.completion_tokens

    assert await asyncio.gather(*(one(i) for i in range(8))) == [6] * 8


async def test_async_streaming_completion(async_client):
    stream = await async_client.completions.create(
        model=EMULATED_MODEL, prompt="stream me", max_tokens=10, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage.completion_tokens == 10
    assert sum(len(c.choices) for c in chunks) >= 1


def test_unknown_fields_from_other_clients_are_accepted(gateway_url):
    body = {
        "model": REAL_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3,
        "stop": None,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "some_future_field": {"x": 1},
    }
    with httpx.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_request_id_is_echoed(gateway_url):
    r = httpx.post(
        f"{gateway_url}/v1/completions",
        json={"model": EMULATED_MODEL, "prompt": "x", "max_tokens": 2},
        headers={"x-request-id": "my-id-123"},
        timeout=30,
    )
    assert r.headers["x-request-id"] == "my-id-123"
    assert r.json()["id"].endswith("my-id-123")


def test_health_metrics_and_fleet(gateway_url):
    health = httpx.get(f"{gateway_url}/health").json()
    assert health["status"] == "ok" and set(health["pools"]) == EMULATED_POOLS | {"cpu-vllm"}
    for path in ("/health", "/ready"):  # what load balancers and probes send
        head = httpx.head(f"{gateway_url}{path}")
        assert head.status_code == httpx.get(f"{gateway_url}{path}").status_code and head.content == b""
    metrics = httpx.get(f"{gateway_url}/metrics").text
    assert "hetserve_requests_total" in metrics
    assert 'pool="cpu-vllm"' in metrics
    fleet = httpx.get(f"{gateway_url}/v1/fleet").json()
    by_name = {p["name"]: p for p in fleet["pools"]}
    assert by_name["cpu-vllm"]["output_tokens"] > 0
    assert by_name["h100"]["emulated"] is True and by_name["h100"]["power_provenance"] == "modelled"


@BOTH
def test_chat_logprobs_come_from_the_engine(client, model):
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0,
        logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True},
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens == 8
    for token in content:
        assert token.logprob <= 0 and token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 3
        values = [t.logprob for t in token.top_logprobs]
        assert values == sorted(values, reverse=True)
        # greedy sampling: the sampled token is a most likely one (the tiny model's bf16 values tie often)
        assert token.logprob == token.top_logprobs[0].logprob
    if model == EMULATED_MODEL:  # whole-word tokens: they spell the text
        assert "".join(t.token for t in content) == resp.choices[0].message.content


@BOTH
def test_streamed_completion_logprobs_cover_every_token(client, model):
    stream = client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=10, logprobs=2, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
    tokens, values, offsets, usage = [], [], [], None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens
                values += choice.logprobs.token_logprobs
                offsets += choice.logprobs.text_offset
                assert all(len(top) <= 3 for top in choice.logprobs.top_logprobs)  # 2, plus the sampled one
    assert len(tokens) == usage.completion_tokens == 10
    assert all(v <= 0 for v in values)
    assert offsets == sorted(offsets) and offsets[0] == 0
