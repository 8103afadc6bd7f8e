"""Move requests off a pool the moment the poller declares it down.

When a node dies, a request sent to a replica on it may wait for its first
item with nothing to wake it: Ray Serve's handle keeps looking for a live
replica of the pool until the node comes back. :class:`DownWatch` ends
those waits when :class:`gateway.fleet_state.FleetState` takes the pool
down (failed polls in a row), with :class:`PoolDown`, a pool failure, so
the service moves the request to the next ranked pool before any byte went
out. Streams already answering are not touched: their bytes are the
client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway import errors

T = TypeVar("T")


class PoolDown(errors.Unavailable):
    """The pool's replicas stopped answering polls while this request waited for its first item."""


class DownWatch:
    """``is_down(pool)``: whether the pool is down now (a retry may pick one that fell meanwhile)."""

    def __init__(self, is_down: Callable[[str], bool] = lambda pool: False) -> None:
        self._is_down = is_down
        self._waiting: dict[str, set[asyncio.Future]] = {}

    def pool_down(self, pool: str) -> None:
        """Fail every first-item wait on ``pool`` (a :meth:`FleetState.on_down` listener)."""
        for signal in self._waiting.pop(pool, set()):
            if not signal.done():
                signal.set_result(None)

    async def guard(self, pool: str, opening: Awaitable[T], abandon: Callable[[T], None] | None = None) -> T:
        """Await ``opening`` (a request's first items on ``pool``) unless the pool goes down first.

        ``abandon`` gets what ``opening`` returned when this await is cancelled after it finished (the client
        left as the first items came): nobody else will close it."""
        if self._is_down(pool):
            if asyncio.iscoroutine(opening):
                opening.close()  # never started: nothing to cancel or release
            raise self._down(pool)
        task = asyncio.ensure_future(opening)
        signal = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(pool, set()).add(signal)
        try:
            await asyncio.wait((task, signal), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()  # the opening cancels what it opened
            elif abandon is not None and not task.cancelled() and task.exception() is None:
                abandon(task.result())
            raise
        finally:
            waiting = self._waiting.get(pool)
            if waiting is not None:
                waiting.discard(signal)
        if task.done():
            return task.result()
        task.cancel()  # the opening cancels its pool streams and releases the pool itself
        await asyncio.gather(task, return_exceptions=True)
        raise self._down(pool)

    @staticmethod
    def _down(pool: str) -> PoolDown:
        return PoolDown(f"pool {pool} is down (its replicas stopped answering) and the request had not started")
