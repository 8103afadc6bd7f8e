"""Body size and JSON depth limits, and refused parameters, without Ray."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.limits import check_depth, json_depth, read_body
from gateway.responses import CHAT, TEXT
from tests.unit.test_service import MODEL, FakePools, make_service

MSG = [{"role": "user", "content": "hi"}]


async def _chunks(*parts: bytes):
    for p in parts:
        yield p


@pytest.mark.parametrize(
    "body,depth",
    [
        (b'{"a": 1}', 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'[[], [], []]', 2),
        (b'{"s": "[[[[[[[[[[{{{{{{"}', 1),  # brackets inside strings do not nest
        (b'{"s": "say \\"[[[[\\" twice", "t": [[1]]}', 3),  # nor after escaped quotes
        (b"[" * 5000 + b"]" * 5000, 33),  # stops counting past the limit asked about
    ],
)
def test_json_depth(body, depth):
    assert json_depth(body, 32) == depth


def test_deep_json_is_refused_before_parsing():
    service, _, _ = make_service(FakePools())
    body = b'{"model": "m", "prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(errors.InvalidRequest) as info:
        service.plan(TEXT, body, {})
    err = errors.error_body(info.value)
    assert err.status == 400 and err.payload["error"]["code"] == "json_too_deep"
    check_depth(json.dumps({"model": "m", "messages": MSG}).encode(), 32)  # ordinary bodies pass


async def test_body_size_limit_by_header_and_by_bytes_read():
    with pytest.raises(errors.PayloadTooLarge):
        await read_body("5000", _chunks(b"x"), 1024)
    with pytest.raises(errors.PayloadTooLarge) as info:
        await read_body(None, _chunks(b"x" * 1000, b"x" * 1000), 1024)  # chunked, no length
    assert errors.error_body(info.value).status == 413
    assert await read_body("4", _chunks(b"ab", b"cd"), 1024) == b"abcd"


@pytest.mark.parametrize(
    "kind,extra,param",
    [
        (CHAT, {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        (CHAT, {"functions": [{"name": "f"}]}, "functions"),
        (CHAT, {"response_format": {"type": "json_object"}}, "response_format"),
        (CHAT, {"logit_bias": {"50256": -100}}, "logit_bias"),
        (CHAT, {"presence_penalty": 0.5}, "presence_penalty"),
        (TEXT, {"frequency_penalty": 1.0}, "frequency_penalty"),
        (TEXT, {"best_of": 3}, "best_of"),
    ],
)
async def test_parameters_no_pool_honours_are_refused_by_name(kind, extra, param):
    service, _, _ = make_service(FakePools())
    base = {"model": MODEL, "messages": MSG} if kind == CHAT else {"model": MODEL, "prompt": "x"}
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(kind, json.dumps({**base, **extra}).encode(), {}, "rid")
    err = errors.error_body(info.value).payload["error"]
    assert err["param"] == param and param in err["message"] and err["code"] == "unsupported_parameter"


async def test_neutral_values_of_those_parameters_pass():
    service, _, _ = make_service(FakePools())
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, "logprobs": False, "presence_penalty": 0,
            "frequency_penalty": 0.0, "logit_bias": {}, "tool_choice": "none", "response_format": {"type": "text"}}
    resp = await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert resp.status_code == 200
