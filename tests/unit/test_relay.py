"""The relay merges deltas on a window without losing, reordering or delaying tokens unduly."""

from __future__ import annotations

import asyncio

import pytest

from workers.engine import EngineDelta
from workers.protocol import RelayItem
from workers.relay import coalesce


async def _deltas(n: int, gap_s: float, fail_at: int | None = None):
    for i in range(n):
        if gap_s:
            await asyncio.sleep(gap_s)
        if i == fail_at:
            raise RuntimeError("engine broke")
        yield EngineDelta(text=f"t{i} ", prompt_tokens=3, output_tokens=i + 1, finish_reason="length" if i == n - 1 else None)


async def test_all_text_arrives_in_order_with_fewer_items():
    # 100 deltas ready at once, well inside one window: they go out merged, not one item each
    items = [i async for i in coalesce(_deltas(100, 0), window_s=0.5)]
    assert "".join(i.text for i in items) == "".join(f"t{i} " for i in range(100))
    assert (items[-1].output_tokens, items[-1].finish_reason) == (100, "length")
    assert len(items) <= 3


async def test_first_delta_is_not_delayed():
    more = asyncio.Event()

    async def first_then_wait():
        yield EngineDelta(text="t0 ", prompt_tokens=3, output_tokens=1, finish_reason=None)
        await more.wait()
        yield EngineDelta(text="t1 ", prompt_tokens=3, output_tokens=2, finish_reason="length")

    gen = coalesce(first_then_wait(), window_s=3600)
    # sent at once, not when the hour-long window closes (the timeout only stops a hang)
    first = await asyncio.wait_for(gen.__anext__(), timeout=60)
    assert first[0] == "t0 "
    more.set()
    await gen.aclose()


async def test_zero_window_passes_every_delta():
    items = [i async for i in coalesce(_deltas(7, 0), window_s=0)]
    assert len(items) == 7


async def test_engine_error_arrives_after_earlier_text():
    seen = []
    with pytest.raises(RuntimeError, match="engine broke"):
        async for item in coalesce(_deltas(10, 0.001, fail_at=4), window_s=0.01):
            seen.append(item[0])
    assert "".join(seen) == "t0 t1 t2 t3 "


async def test_closing_the_relay_cancels_the_source():
    cancelled = asyncio.Event()

    async def endless():
        try:
            i = 0
            while True:
                await asyncio.sleep(0.001)
                i += 1
                yield EngineDelta("x", 1, i)
        except (asyncio.CancelledError, GeneratorExit):
            cancelled.set()
            raise

    gen = coalesce(endless(), window_s=0.01)
    await gen.__anext__()
    await gen.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_window_can_follow_load():
    widths = iter([0.0001] * 3 + [0.05] * 1000)
    items = [i async for i in coalesce(_deltas(60, 0.001), window_s=lambda: next(widths))]
    assert "".join(i.text for i in items) == "".join(f"t{i} " for i in range(60))
    assert 3 <= len(items) < 20


def test_adaptive_window_grows_with_streams_up_to_its_cap():
    from workers.relay import adaptive_window

    assert adaptive_window(1, 0.05, 400) == 0.0025
    assert adaptive_window(16, 0.05, 400) == 0.04
    assert adaptive_window(64, 0.05, 400) == 0.05
    assert adaptive_window(0, 0.05, 400) == 0.002


async def test_whole_sends_one_item():
    from workers.relay import whole

    items = [i async for i in whole(_deltas(10, 0))]
    assert items == [RelayItem("".join(f"t{i} " for i in range(10)), 3, 10, "length")]


async def test_whole_with_progress_sends_an_empty_item_per_period_of_advancing_tokens_then_the_answer():
    from workers.relay import whole

    clock = iter(float(t) for t in range(1000))  # every reading one second later
    items = [i async for i in whole(_deltas(10, 0), progress_s=3.0, clock=lambda: next(clock))]
    *progress, answer = items
    assert answer == RelayItem("".join(f"t{i} " for i in range(10)), 3, 10, "length")
    assert progress and all(p.text == "" and p.finish_reason is None and p.telemetry is None for p in progress)
    counts = [p.output_tokens for p in progress]
    assert counts == sorted(counts) and counts[-1] < 10  # the counts so far, never the finishing delta
    assert len(progress) < 10  # not one per delta: one per period
    assert [i async for i in whole(_deltas(10, 0), progress_s=1e9)] == [answer]  # a short answer: one item
