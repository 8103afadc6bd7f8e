"""Parameters only some engines honour: the capability filter routes them there, or a 400 names them (no Ray)."""

from __future__ import annotations

import json

import pytest

from fleet.config import parse_fleet
from gateway import errors
from gateway.fleet_state import FleetState
from gateway.metrics import GatewayMetrics
from gateway.responses import CHAT, TEXT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import PoolState, RequestShape, UnsupportedFeature, build_policy, build_router, load_routing_config
from routing.framework import Router
from tests.unit.test_service import FakePools
from workers.protocol import ReplicaStats

MODEL = "m"
MSG = [{"role": "user", "content": "hi"}]
FLEET = parse_fleet({"pools": [
    {"name": "emu", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL]},
    {"name": "gpu", "hardware": "h100", "engine": "vllm", "model": "some/model", "models": [MODEL]},
]})
VLLM_FEATURES = frozenset({"presence_penalty", "frequency_penalty", "logit_bias", "response_format", "top_k",
                           "min_p", "repetition_penalty", "min_tokens"})


def _pools():
    return [
        PoolState("emu", "h100", (MODEL,), capacity=8, running=0),
        PoolState("gpu", "h100", (MODEL,), capacity=8, running=5, capabilities=VLLM_FEATURES),
    ]


def test_the_filter_keeps_pools_that_honour_every_feature_and_says_why_others_went():
    router = Router(build_policy("least-load"))
    plain = router.choose(RequestShape(MODEL, 10, 10), _pools())
    assert plain.best.name == "emu"  # the less loaded pool, with nothing asked of it
    d = router.choose(RequestShape(MODEL, 10, 10, features=frozenset({"presence_penalty"})), _pools())
    assert [r.name for r in d.ranked] == ["gpu"]
    assert "emu (lacks presence_penalty)" in d.reason


def test_no_pool_with_the_feature_is_an_error_naming_it():
    router = Router(build_policy("least-load"))
    with pytest.raises(UnsupportedFeature) as info:
        router.choose(RequestShape(MODEL, 10, 10, features=frozenset({"logprobs"})), _pools())
    body = errors.error_body(info.value)
    assert body.status == 400 and body.payload["error"]["param"] == "logprobs"
    assert body.payload["error"]["code"] == "unsupported_parameter"


def _service():
    state = FleetState(FLEET.pools)
    for name in ("emu", "gpu"):
        state.record_stats(name, ReplicaStats(f"{name}1", max_model_len=4096))
    state.acquire("gpu", 3)  # least-load prefers emu unless a feature rules it out
    router = build_router(load_routing_config({"policy": "least-load"}))
    pools = FakePools()
    service = CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, GatewayMetrics())
    return service, pools


async def test_a_request_with_penalties_and_a_schema_goes_to_the_pool_that_honours_them_with_them():
    service, pools = _service()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, "presence_penalty": 0.5, "frequency_penalty": -0.5,
            "logit_bias": {"42": -100}, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}
    resp = await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert resp.headers["x-hetserve-pool"] == "gpu"
    p = pools.requests[0].params
    assert (p.presence_penalty, p.frequency_penalty, p.logit_bias) == (0.5, -0.5, {42: -100.0})
    assert p.response_format["json_schema"]["schema"] == schema
    plain = await service.handle(CHAT, json.dumps({"model": MODEL, "messages": MSG, "max_tokens": 2}).encode(), {}, "r2")
    assert plain.headers["x-hetserve-pool"] == "emu"
    assert pools.requests[-1].params.response_format is None


async def test_vllms_sampling_extensions_go_to_the_vllm_pool_and_their_neutral_values_anywhere():
    service, pools = _service()
    body = {"model": MODEL, "prompt": "x", "max_tokens": 4, "top_k": 1, "min_p": 0.1, "repetition_penalty": 1.2,
            "min_tokens": 2}
    resp = await service.handle(TEXT, json.dumps(body).encode(), {}, "rid")
    assert resp.headers["x-hetserve-pool"] == "gpu"
    p = pools.requests[-1].params
    assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens) == (1, 0.1, 1.2, 2)
    neutral = {"model": MODEL, "prompt": "x", "max_tokens": 4, "top_k": -1, "min_p": 0, "repetition_penalty": 1,
               "min_tokens": 0}
    resp = await service.handle(TEXT, json.dumps(neutral).encode(), {}, "r2")
    assert resp.headers["x-hetserve-pool"] == "emu"
    p = pools.requests[-1].params
    assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens) == (0, 0.0, 1.0, 0)
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(TEXT, json.dumps({**body, "top_k": 5}).encode(), {"x-hetserve-pool-pin": "emu"}, "r3")
    assert info.value.code == "unsupported_parameter"


@pytest.mark.parametrize("extra,param", [
    ({"top_k": "abc"}, "top_k"),
    ({"top_k": -2}, "top_k"),
    ({"min_p": 5}, "min_p"),
    ({"repetition_penalty": -1}, "repetition_penalty"),
    ({"min_tokens": 5}, "min_tokens"),  # more than max_tokens
])
async def test_malformed_sampling_extensions_are_400s_naming_them(extra, param):
    service, _ = _service()
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2, **extra}
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(TEXT, json.dumps(body).encode(), {}, "rid")
    assert info.value.param == param


async def test_pinned_to_a_pool_that_cannot_honour_it_is_a_400_naming_the_parameter():
    service, _ = _service()
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2, "frequency_penalty": 1.0}
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(TEXT, json.dumps(body).encode(), {"x-hetserve-pool-pin": "emu"}, "rid")
    assert info.value.param == "frequency_penalty" and info.value.code == "unsupported_parameter"


@pytest.mark.parametrize("extra,param", [
    ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s"}}}, "response_format"),
])
async def test_malformed_values_are_400s_naming_the_parameter(extra, param):
    service, _ = _service()
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, **extra}
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert info.value.param == param
