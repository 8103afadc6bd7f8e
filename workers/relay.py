"""Merge engine deltas into fewer, larger relayed lines when many streams share a replica.

Every relayed line costs the gateway a read, a decode and an SSE write
(``bench/gateway_alone.py``), so a replica busy with many streams merges
their deltas; one stream alone gets every delta (the replica sizes the
window, ``workers.pool``). The relay sends a delta at once when nothing was sent in the last
``window_s`` (so time to first token is untouched) and otherwise sends what
accumulated when the window since the previous send closes: a token waits at
most ``window_s`` longer than it would unmerged.

The window may be a callable, read before every send: a replica sizes it to
its load (:func:`adaptive_window`), short when one stream runs alone, longer
when many share the replica's budget of Ray items per second.

Items are ``RelayItem``s without telemetry (the replica adds it to the last).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from workers.engine import EngineDelta
from workers.protocol import RelayItem

_END = object()


def merge(deltas: list[EngineDelta]) -> RelayItem:
    last = deltas[-1]
    if len(deltas) == 1:
        return RelayItem(last.text, last.prompt_tokens, last.output_tokens, last.finish_reason, None, last.logprobs)
    logprobs = [lp for d in deltas for lp in d.logprobs] if last.logprobs is not None else None
    text = "".join(d.text for d in deltas)
    return RelayItem(text, last.prompt_tokens, last.output_tokens, last.finish_reason, None, logprobs)


def adaptive_window(streams: int, max_window_s: float, items_per_s: float, min_window_s: float = 0.002) -> float:
    """The window that keeps ``streams`` concurrent streams within ``items_per_s`` items in total."""
    return min(max_window_s, max(min_window_s, streams / items_per_s))


async def whole(source: AsyncIterator[EngineDelta], progress_s: float | None = None,
                clock: Callable[[], float] = time.monotonic) -> AsyncIterator[RelayItem]:
    """One item for the whole output (non-streaming requests), the last; before it, with ``progress_s``,
    an empty item (no text, the token counts so far) when a delta arrives ``progress_s`` or more after the
    start or the previous one: a long answer shows the gateway it advances, a stalled engine shows nothing."""
    deltas: list[EngineDelta] = []
    last = clock()
    async for delta in source:
        deltas.append(delta)
        if progress_s is not None and delta.finish_reason is None and (now := clock()) - last >= progress_s:
            last = now
            logprobs = [] if delta.logprobs is not None else None
            yield RelayItem("", delta.prompt_tokens, delta.output_tokens, None, None, logprobs)
    if deltas:
        yield merge(deltas)


async def coalesce(source: AsyncIterator[EngineDelta], window_s: float | Callable[[], float]) -> AsyncIterator[RelayItem]:
    """Yield merged items from ``source``; closing this generator cancels ``source``.

    With a window ``<= 0`` every delta becomes its own item.
    """
    window = window_s if callable(window_s) else (lambda: window_s)
    if window() <= 0:
        async for delta in source:
            yield merge([delta])
        return

    buffer: list = []
    ready = asyncio.Event()

    async def pump() -> None:
        try:
            async for delta in source:
                buffer.append(delta)
                ready.set()
            buffer.append(_END)
        except Exception as exc:  # handed to the consumer after the deltas before it
            buffer.append(exc)
        ready.set()

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(pump())
    last_sent = -float("inf")
    try:
        while True:
            await ready.wait()
            wait = last_sent + window() - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            ready.clear()
            items, buffer[:] = buffer[:], []
            deltas = [i for i in items if isinstance(i, EngineDelta)]
            if deltas:
                yield merge(deltas)
                last_sent = loop.time()
            tail = items[-1]
            if isinstance(tail, Exception):
                raise tail
            if tail is _END or (deltas and deltas[-1].finish_reason is not None):
                return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
