"""A pool whose replicas died with their node: down after failed polls, its waiting requests moved to
another pool, back on the first poll that succeeds (fake pools, no Ray)."""

from __future__ import annotations

import asyncio
import json

import pytest

from fleet.config import FailoverSpec
from gateway.responses import TEXT
from gateway.liveness import DownWatch, PoolDown
from tests.unit.test_failover import BODY, MODEL, FlakyPools, make
from tests.unit.test_service import FakeStream
from workers.protocol import ReplicaStats


class Hanging(FakeStream):
    """A stream on a replica whose node is gone: its first item never comes."""

    async def __anext__(self):
        await asyncio.Event().wait()


class DeadPool(FlakyPools):
    def __init__(self, dead: str):
        super().__init__()
        self.dead = dead

    def stream(self, pool, request, replica=""):
        if pool != self.dead:
            return super().stream(pool, request)
        self.calls.append(pool)
        s = Hanging([])
        self.streams.append(s)
        return s


def test_a_pool_is_down_after_failed_polls_in_a_row_and_back_on_the_first_success():
    service, state, _, _ = make(FlakyPools())
    fell: list[str] = []
    state.on_down(fell.append)
    state.record_stats("a", ReplicaStats("a1", running=5, waiting=2, output_tokens_total=40))
    state.record_failure("a", "ActorUnavailableError: node died")
    assert state.healthy()["a"] is True  # one slow poll is not a dead pool
    state.record_failure("a", "TimeoutError")
    state.record_failure("a", "TimeoutError")
    view = {p.name: p for p in state.describe()}["a"]
    assert (view.healthy, view.ready, view.running, view.waiting) == (False, False, 0, 0)
    assert view.output_tokens == 40 and view.last_error == "TimeoutError"
    assert fell == ["a"]  # told once per fall
    state.record_stats("a", ReplicaStats("a2"))  # Serve restarted the replica on the returned node
    assert state.healthy()["a"] is True and state.pools["a"].failed_polls == 0


async def test_a_request_waiting_on_a_pool_that_goes_down_moves_to_the_next_pool_without_the_retry_budget():
    spec = FailoverSpec(retry_budget_ratio=0, retry_budget_min=0)  # no budgeted retry at all
    service, state, _, _ = make(FlakyPools(), failover=spec)
    first, second = [r.name for r in service.plan(TEXT, BODY, {})[3].ranked]
    service.pools = DeadPool(first)
    state.on_down(service.down_watch.pool_down)
    task = asyncio.create_task(service.handle(TEXT, BODY, {}, "rid"))
    while not service.pools.calls:
        await asyncio.sleep(0)
    assert not task.done()
    for _ in range(state.down_after_failed_polls):
        state.record_failure(first, "TimeoutError")
    resp = await asyncio.wait_for(task, 5)
    assert resp.status_code == 200 and resp.headers["x-hetserve-pool"] == second
    assert json.loads(resp.body)["choices"][0]["text"].startswith(second)
    assert service.pools.calls == [first, second] and service.pools.streams[0].cancelled
    assert all(r.in_flight == 0 for r in state.pools.values())


async def test_the_guard_passes_results_and_failures_through_and_forgets_its_waits():
    watch = DownWatch()

    async def value():
        return 7

    async def boom():
        raise ValueError("bad prompt")

    assert await watch.guard("a", value()) == 7
    with pytest.raises(ValueError):
        await watch.guard("a", boom())
    watch.pool_down("a")  # nobody waits: nothing to fail
    with pytest.raises(PoolDown):
        waiting = asyncio.create_task(watch.guard("a", asyncio.Event().wait()))
        await asyncio.sleep(0)
        watch.pool_down("a")
        await waiting


async def test_a_pool_already_down_fails_the_guard_without_starting_the_request():
    started = []

    async def opening():
        started.append(1)

    with pytest.raises(PoolDown):
        await DownWatch(is_down=lambda pool: pool == "a").guard("a", opening())
    assert started == []


async def test_what_opened_is_abandoned_when_the_guard_is_cancelled_just_after_it_opened():
    abandoned, opened = [], asyncio.Event()

    async def opening():
        opened.set()
        return ["stream"]

    guarded = asyncio.create_task(DownWatch().guard("a", opening(), abandon=abandoned.append))
    await opened.wait()  # the opening ran to its end; the guard has not woken yet
    guarded.cancel()  # the client left as the first items came
    with pytest.raises(asyncio.CancelledError):
        await guarded
    assert abandoned == [["stream"]]  # nobody else would close what it opened


async def test_an_opening_still_running_when_the_guard_is_cancelled_is_cancelled_not_abandoned():
    abandoned, cancelled = [], []

    async def opening():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    guarded = asyncio.create_task(DownWatch().guard("a", opening(), abandon=abandoned.append))
    await asyncio.sleep(0)
    guarded.cancel()
    with pytest.raises(asyncio.CancelledError):
        await guarded
    await asyncio.sleep(0)
    assert cancelled == [1] and abandoned == []
