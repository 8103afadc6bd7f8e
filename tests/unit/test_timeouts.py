"""Hung pools: the first-token timeout fails over, the idle timeout ends a stream with an error event (no Ray)."""

from __future__ import annotations

import asyncio
import json

import pytest

from fleet.config import FleetConfigError, TimeoutSpec, parse_fleet
from gateway import errors
from gateway.responses import CHAT, TEXT
from tests.unit.test_failover import BODY, STREAM_BODY, FlakyPools, _body, _metric, _pool_order, make
from tests.unit.test_service import FakeStream

#: Short to keep the tests fast, long enough that a busy machine never trips it between two ready items;
#: nothing asserts how long anything took.
TIMEOUTS = TimeoutSpec(first_token_s=0.3, idle_s=0.3)


class HangAfter(FakeStream):
    """Yields ``ok`` items, then never another (a hung engine)."""

    def __init__(self, items, ok: int):
        super().__init__(items)
        self._ok = ok

    async def __anext__(self):
        if self._ok == 0:
            await asyncio.Event().wait()
        self._ok -= 1
        return await super().__anext__()


class HangingPools(FlakyPools):
    """Pool ``name`` hangs after ``hang[name]`` items."""

    def __init__(self, hang: dict[str, int]):
        super().__init__()
        self.hang = hang

    def stream(self, pool, request, replica=""):
        s = super().stream(pool, request)
        if pool in self.hang:
            s = HangAfter(s._items, self.hang[pool])
            self.streams[-1] = s
        return s


def _service(hang_first: int):
    service, state, metrics, _ = make(FlakyPools())
    first, second = _pool_order(service)
    pools = HangingPools({first: hang_first})
    service.pools = pools
    service.timeouts = TIMEOUTS
    return service, state, metrics, pools, first, second


async def test_a_pool_without_a_first_token_is_left_for_the_next_and_ejected():
    service, state, metrics, pools, first, second = _service(hang_first=0)
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.status_code == 200 and resp.headers["x-hetserve-pool"] == second
    assert pools.calls == [first, second]
    assert pools.streams[0].cancelled
    fleet = {p.name: p for p in state.describe()}
    assert fleet[first].healthy is False and "sent no answer within" in fleet[first].ejection_reason
    assert _metric(metrics, "hetserve_retries_total", model="m", failed_pool=first) == 1
    assert all(r.in_flight == 0 for r in state.pools.values())


async def test_a_hung_pool_with_nowhere_to_go_is_a_504():
    service, _, _, _, first, _ = _service(hang_first=0)
    with pytest.raises(errors.PoolTimeout) as info:
        await service.handle(TEXT, BODY, {"x-hetserve-pool-pin": first}, "rid")
    body = errors.error_body(info.value)
    assert body.status == 504 and body.payload["error"]["code"] == "pool_timeout"
    assert service.active == 0


async def test_a_stream_that_stalls_after_its_first_bytes_ends_with_an_error_event_and_done():
    service, state, metrics, pools, first, _ = _service(hang_first=1)
    resp = await service.handle(CHAT, STREAM_BODY, {}, "rid")
    assert resp.headers["x-hetserve-pool"] == first
    text = await _body(resp)
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "pool_timeout" and "no token for" in error["message"]
    assert json.loads(events[0])["choices"][0]["delta"]  # the first token went out before the stall
    assert pools.streams[0].cancelled
    assert _metric(metrics, "hetserve_streams_broken_total", model="m", pool=first) == 1
    assert service.active == 0 and all(r.in_flight == 0 for r in state.pools.values())


async def test_a_whole_response_that_stalls_midway_goes_to_the_next_pool():
    service, _, _, pools, first, second = _service(hang_first=2)
    resp = await service.handle(TEXT, BODY, {}, "rid")
    assert resp.headers["x-hetserve-pool"] == second
    assert pools.calls == [first, second]


async def test_a_slow_pool_that_keeps_sending_is_not_timed_out():
    class Slow(FlakyPools):
        def stream(self, pool, request, replica=""):
            s = super().stream(pool, request)
            inner = s.__anext__

            async def slow():
                await asyncio.sleep(0.01)  # each gap 50x under idle_s; the whole stream (80 gaps) over it
                return await inner()

            s.__anext__ = slow
            return s

    service, _, _, _ = make(Slow())
    service.timeouts = TimeoutSpec(first_token_s=0.5, idle_s=0.5)
    resp = await service.handle(TEXT, json.dumps({"model": "m", "prompt": "x", "max_tokens": 80}).encode(), {}, "rid")
    assert resp.status_code == 200
    assert service.pools.calls == [resp.headers["x-hetserve-pool"]]


@pytest.mark.parametrize("key,value", [("first_token_s", 0), ("idle_s", -1), ("first_tokens_s", 5)])
def test_timeouts_are_validated_naming_the_key(key, value):
    pool = {"name": "a", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": ["m"]}
    with pytest.raises(FleetConfigError, match=f"gateway.timeouts.{key}"):
        parse_fleet({"gateway": {"timeouts": {key: value}}, "pools": [pool]})
