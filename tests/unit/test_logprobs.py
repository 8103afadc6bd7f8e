"""Log-probabilities: the emulated engine's exact ones, their trip over the wire, and OpenAI's two shapes (no Ray)."""

from __future__ import annotations

import json
import math

import pytest

from gateway import errors
from gateway.responses import CHAT, TEXT
from tests.unit.test_service import FakeStream, make_service
from workers import wire
from workers.emulated_engine import EmulatedEngine
from workers.emulation.text import TOKEN_LOGPROB, VOCABULARY, SyntheticText, token_logprob
from workers.engine import EngineDelta, EngineRequest, SamplingParams, TokenLogprob, TopLogprob
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry
from workers.relay import merge, whole

MODEL = "m"
MSG = [{"role": "user", "content": "hi"}]


def test_the_emulated_sampler_reports_its_own_uniform_distribution():
    lp = token_logprob(" energy", 3)
    assert lp.token == " energy" and lp.logprob == pytest.approx(math.log(1 / len(VOCABULARY)))
    assert [t.token for t in lp.top] == [" energy", " joule", " batch"]  # the sampled word first, ties after
    assert all(t.logprob == TOKEN_LOGPROB for t in lp.top)
    assert token_logprob("the", 0).top == ()


async def test_emulated_engine_gives_one_logprob_per_token_that_spells_the_text():
    engine = EmulatedEngine("h100", "llama-3.1-8b", max_batch=4, time_scale=0.001)
    await engine.start()
    try:
        params = SamplingParams(max_tokens=12, seed=3, logprobs=2)
        deltas = [d async for d in engine.generate(EngineRequest("r", prompt="hello", params=params))]
        plain = [d async for d in engine.generate(EngineRequest("p", prompt="hello", params=SamplingParams(max_tokens=3)))]
    finally:
        await engine.shutdown()
    lps = [lp for d in deltas for lp in d.logprobs]
    assert len(lps) == 12 and "".join(lp.token for lp in lps) == "".join(d.text for d in deltas)
    assert all(len(lp.top) == 2 and lp.top[0].token == lp.token for lp in lps)
    assert all(d.logprobs is None for d in plain)


def test_the_synthetic_text_names_each_generated_token():
    text = SyntheticText(1, "p", stop=["zzz"])  # a stop string holds nothing back here
    emitted, tokens = [], []
    for _ in range(5):
        emitted.append(text.next_token())
        tokens.append(text.last_token)
    assert emitted == tokens
    assert not tokens[0].startswith(" ") and all(t.startswith(" ") for t in tokens[1:])


def _lp(token: str, value: float = -0.5) -> TokenLogprob:
    return TokenLogprob(token, value, (TopLogprob(token, value), TopLogprob("x", -2.0)))


def test_merged_deltas_keep_every_token_logprob_in_order():
    deltas = [EngineDelta("a", 3, 1, None, [_lp("a")]), EngineDelta("b", 3, 2, "length", [_lp("b")])]
    item = merge(deltas)
    assert item.text == "ab" and [lp.token for lp in item.logprobs] == ["a", "b"]
    assert merge([EngineDelta("a", 3, 1, None)]).logprobs is None


async def test_whole_output_keeps_the_logprobs():
    async def source():
        yield EngineDelta("a", 3, 1, None, [_lp("a")])
        yield EngineDelta("b", 3, 2, "length", [_lp("b")])

    (item,) = [i async for i in whole(source())]
    assert [lp.token for lp in item.logprobs] == ["a", "b"]


@pytest.mark.parametrize("telemetry", [None, Telemetry(1.0, 0.2, ReplicaStats("r1")),
                                       Telemetry(1.0, 0.2, ReplicaStats("r1"), first_token_s=0.05)])
def test_logprobs_cross_the_wire_with_or_without_telemetry(telemetry):
    item = RelayItem("ab", 3, 2, None if telemetry is None else "length", telemetry, [_lp("a"), _lp("b", -1.25)])
    back = wire.decode_item(wire.encode_item(item))
    assert back == item
    plain = RelayItem("ab", 3, 2, None)
    assert wire.decode_item(wire.encode_item(plain)) == plain


class LogprobPools:
    """Pools whose items carry a log-probability per token (what an engine asked for them sends)."""

    def __init__(self):
        self.requests: list[PoolRequest] = []

    def stream(self, pool: str, request: PoolRequest, replica=""):
        self.requests.append(request)
        n = request.params.max_tokens
        items = [
            RelayItem(f"t{i}", 5, i + 1, "length" if i == n - 1 else None, None, [_lp(f"t{i}", -0.1 * (i + 1))])
            for i in range(n)
        ]
        items[-1] = items[-1]._replace(telemetry=Telemetry(1.0, 0.1, ReplicaStats("r1")))
        return FakeStream(items)


async def _events(resp) -> list[dict]:
    text = "".join([c async for c in resp.body_iterator])
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


async def test_chat_logprobs_in_openai_shape_whole_and_streamed():
    pools = LogprobPools()
    service, _, _ = make_service(pools)
    body = {"model": MODEL, "messages": MSG, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    out = json.loads((await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")).body)
    assert pools.requests[0].params.logprobs == 2
    lps = out["choices"][0]["logprobs"]
    assert lps["refusal"] is None
    assert [c["token"] for c in lps["content"]] == ["t0", "t1", "t2"]
    assert lps["content"][1] == {"token": "t1", "logprob": -0.2, "bytes": [116, 49], "top_logprobs": [
        {"token": "t1", "logprob": -0.2, "bytes": [116, 49]}, {"token": "x", "logprob": -2.0, "bytes": [120]}]}
    chunks = await _events(await service.handle(CHAT, json.dumps({**body, "stream": True}).encode(), {}, "rid2"))
    streamed = [c for ch in chunks for c in ch["choices"][0]["logprobs"]["content"]]
    assert streamed == lps["content"]


async def test_completion_logprobs_with_offsets_whole_and_streamed():
    pools = LogprobPools()
    service, _, _ = make_service(pools)
    body = {"model": MODEL, "prompt": "x", "max_tokens": 3, "logprobs": 0}
    out = json.loads((await service.handle(TEXT, json.dumps(body).encode(), {}, "rid")).body)
    assert pools.requests[0].params.logprobs == 0
    lps = out["choices"][0]["logprobs"]
    assert lps["tokens"] == ["t0", "t1", "t2"] and lps["text_offset"] == [0, 2, 4]
    assert lps["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3])
    assert lps["top_logprobs"][0] == {"t0": -0.1, "x": -2.0}
    chunks = await _events(await service.handle(TEXT, json.dumps({**body, "stream": True}).encode(), {}, "rid2"))
    assert [c["choices"][0]["logprobs"]["text_offset"] for c in chunks] == [[0], [2], [4]]


async def test_without_logprobs_nothing_is_asked_and_null_is_answered():
    pools = LogprobPools()
    service, _, _ = make_service(pools)
    body = {"model": MODEL, "messages": MSG, "max_tokens": 1, "logprobs": False}
    await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert pools.requests[0].params.logprobs is None


@pytest.mark.parametrize("kind,extra,param", [
    (CHAT, {"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true, as OpenAI refuses it
    (CHAT, {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    (TEXT, {"logprobs": 6}, "logprobs"),
])
async def test_out_of_range_logprob_requests_are_400_naming_the_parameter(kind, extra, param):
    service, _, _ = make_service(LogprobPools())
    base = {"model": MODEL, "messages": MSG} if kind == CHAT else {"model": MODEL, "prompt": "x"}
    with pytest.raises(errors.APIError) as info:
        await service.handle(kind, json.dumps({**base, **extra}).encode(), {}, "rid")
    body = errors.error_body(info.value)
    assert body.status == 400 and body.payload["error"]["param"] == param
