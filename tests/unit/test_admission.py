"""The gateway's admission limit: 429 past it, with a Retry-After predicted from the completion rate (fake clock)."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.admission import Admission
from gateway.responses import CHAT, TEXT
from tests.unit.test_failover import BODY, STREAM_BODY, FlakyPools, _body, make


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_below_the_limit_admits():
    Admission(2).admit(1)


def test_at_the_limit_the_wait_comes_from_recent_completions():
    clock = Clock()
    adm = Admission(4, window_s=10, clock=clock)
    for _ in range(20):  # 20 ended in the last 10 s: 2 per second
        adm.ended()
    with pytest.raises(errors.Overloaded) as info:
        adm.admit(9)  # 6 over the limit (itself included): 3 s
    body = errors.error_body(info.value)
    assert body.status == 429 and body.payload["error"]["code"] == "gateway_overloaded"
    assert body.headers["Retry-After"] == "3"


def test_without_recent_completions_the_wait_is_the_window_and_bounded():
    clock = Clock()
    adm = Admission(1, window_s=10, clock=clock)
    adm.ended()
    clock.now += 11  # that completion left the window
    with pytest.raises(errors.Overloaded) as info:
        adm.admit(1)
    assert info.value.headers["Retry-After"] == "10"
    clock.now += 1
    adm.ended()
    with pytest.raises(errors.Overloaded) as info:
        adm.admit(1000)  # 1000 × 10 s: capped
    assert info.value.headers["Retry-After"] == "60"


async def test_the_service_refuses_past_its_limit_and_admits_again_when_a_stream_ends():
    service, _, _, _ = make(FlakyPools())
    service.admission.limit = 1
    stream = await service.handle(CHAT, STREAM_BODY, {}, "rid")
    with pytest.raises(errors.Overloaded):
        await service.handle(TEXT, BODY, {}, "rid2")
    await _body(stream)
    resp = await service.handle(TEXT, BODY, {}, "rid3")
    assert json.loads(resp.body)["choices"]


def test_a_saturated_pool_maps_to_429_with_a_whole_second_retry_after():
    from routing import AllPoolsSaturated

    body = errors.error_body(AllPoolsSaturated(4.1, "m"))
    assert body.status == 429 and body.headers["Retry-After"] == "5"
    assert body.payload["error"]["message"].endswith("retry after 5 s")  # what the header says
    short = errors.error_body(AllPoolsSaturated(0.009, "m"))
    assert short.headers["Retry-After"] == "1" and short.payload["error"]["message"].endswith("retry after 1 s")
