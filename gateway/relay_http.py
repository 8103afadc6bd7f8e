"""The gateway's side of the data path: pool replicas' internal HTTP endpoints.

The router picks the pool, and the replica when the pool has several
(``gateway.fleet_state``); otherwise :class:`HttpPools` picks it (fewer
sequences this gateway has in flight there, of two at random) among the
endpoints the replicas reported in their polled stats, and relays the
replica's ``workers.wire`` lines over keep-alive connections
(``gateway.pool_http``: no per-request handshake). A replica that cannot be
reached, or answers for another replica, is dropped and the sequence tried
on the next one before its first item; when none is left the pool has
failed and the service fails over to the next pool (``gateway.service``).
Ray Serve's handles are kept for the stats polls only.

A network read is decoded whole:
every line it holds becomes an item at once, and :meth:`HttpStream.ready`
hands the ones behind the first to the writer, which sends them in one
write (the more the gateway lags, the fewer writes per token).
"""

from __future__ import annotations

import json
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.pool_http import Call, PoolConnectionError, PoolHttp, PoolHttpError, Response
from workers import wire
from workers.errors import EngineFailure
from workers.protocol import PoolRequest, RelayItem, ReplicaStats

log = logging.getLogger("hetserve.gateway.relay")

_NDJSON = "application/x-ndjson"


def _failure(exc: BaseException) -> EngineFailure:
    return EngineFailure(f"the replica broke the stream: {type(exc).__name__}: {exc}")


@dataclass
class Endpoint:
    replica: str
    url: str
    in_flight: int = 0


class HttpPools:
    """The service's view of pools (``gateway.service.PoolClient``): streams over HTTP, stats over Serve."""

    def __init__(self, handles: dict[str, Any], token: str,
                 on_unreachable: Callable[[str, str], None] | None = None):
        self.handles = handles
        self.on_unreachable = on_unreachable  # (pool, replica) of a replica dropped for a connection error
        self.http = PoolHttp({wire.TOKEN_HEADER: token, "content-type": "application/json"})
        self.endpoints: dict[str, dict[str, Endpoint]] = {name: {} for name in handles}

    async def stats(self, pool: str) -> ReplicaStats:
        """Poll one replica of ``pool`` (Serve picks which) and learn its endpoint."""
        stats: ReplicaStats = await self.handles[pool].stats.remote()
        if stats.endpoint:
            self.add(pool, stats.replica, stats.endpoint)
        return stats

    def add(self, pool: str, replica: str, url: str) -> None:
        known = self.endpoints.setdefault(pool, {}).get(replica)
        if known is None or known.url != url:
            self.endpoints[pool][replica] = Endpoint(replica, url)

    def drop(self, pool: str, endpoint: Endpoint, why: str) -> None:
        self.http.forget(endpoint.url)
        if self.endpoints.get(pool, {}).pop(endpoint.replica, None) is not None:
            log.warning("pool %s: dropped replica %s at %s: %s", pool, endpoint.replica, endpoint.url, why)
        if self.on_unreachable is not None:
            self.on_unreachable(pool, endpoint.replica)

    def pick(self, pool: str, exclude: set[str], prefer: str = "") -> Endpoint | None:
        """``prefer`` (the replica the router chose) while it is known and not excluded, else the
        fewer in flight of two at random."""
        known = self.endpoints.get(pool, {})
        if prefer and prefer not in exclude and prefer in known:
            return known[prefer]
        choices = [e for e in known.values() if e.replica not in exclude]
        if not choices:
            return None
        if len(choices) > 2:
            choices = random.sample(choices, 2)  # power of two choices
        least = min(e.in_flight for e in choices)
        return random.choice([e for e in choices if e.in_flight == least])

    def stream(self, pool: str, request: PoolRequest, replica: str = "") -> "HttpStream":
        """``request`` on ``replica`` of ``pool`` (any replica of it: "", or when that one cannot be reached)."""
        return HttpStream(self, pool, request, replica)

    async def aclose(self) -> None:
        await self.http.aclose()


class HttpStream:
    """One sequence's relay items; ``cancel()`` closes the connection, which aborts the engine request."""

    def __init__(self, pools: HttpPools, pool: str, request: PoolRequest, replica: str = ""):
        self.pools, self.pool, self.request, self.replica = pools, pool, request, replica
        self._endpoint: Endpoint | None = None
        self._call: Call | None = None  # the request, until its answer's head
        self._response: Response | None = None
        self._items: deque[RelayItem] = deque()  # decoded, not yet handed out
        self._partial = b""  # the start of a line the next read ends
        self._error: BaseException | None = None  # raised once the items before it are handed out
        self._done = False  # nothing more will be read
        self._closed = False
        self._cancelled = False
        self._opening = False

    def __aiter__(self) -> "HttpStream":
        return self

    async def __anext__(self) -> RelayItem:
        while not self._items:
            if self._cancelled:
                raise StopAsyncIteration
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._done:
                raise StopAsyncIteration
            if self._response is None:
                self._opening = True
                try:
                    await self._open()
                finally:
                    self._opening = False
                continue
            try:
                await self._read()
            except PoolHttpError as exc:
                if self._cancelled:  # cancel() closed the connection under this read: nothing failed
                    raise StopAsyncIteration from None
                if isinstance(exc, PoolConnectionError):  # learned again from the next poll if it lives
                    self.pools.drop(self.pool, self._endpoint, f"{type(exc).__name__}: {exc}")
                raise _failure(exc) from None
        return self._items.popleft()

    def ready(self) -> list[RelayItem]:
        """The items already read behind the last one handed out (no I/O): the writer sends them with it."""
        items = list(self._items)
        self._items.clear()
        return items

    async def _read(self) -> None:
        """One network read, decoded whole; on a failure the connection is closed and the error raised."""
        try:
            chunk = await self._response.chunk()
        except BaseException:
            self._release()
            raise
        if not chunk:  # the body ended without a finishing item: the service says so
            self._done = True
            self._release()
            if self._partial.strip():
                self._error = EngineFailure("the replica's stream ended in the middle of a line")
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            try:
                item = wire.decode_item(line)
            except BaseException as exc:  # an error line (typed), or bytes that are no item
                self._error, self._done = exc, True
                self._release()
                return
            self._items.append(item)
            if item.finish_reason is not None:
                await self._finish()
                return

    async def _open(self) -> None:
        """Send the request to a replica; before the first item, a dead replica is dropped and the next tried."""
        tried: set[str] = set()
        body = wire.encode_request(self.request)
        while not self._cancelled:  # cancelled while a dead replica was tried: no other one is asked
            endpoint = self.pools.pick(self.pool, tried, self.replica)
            if endpoint is None:
                why = "no replica reachable" if tried else "no replica endpoint known yet"
                raise EngineFailure(f"pool {self.pool}: {why}")
            tried.add(endpoint.replica)
            endpoint.in_flight += 1
            self._endpoint, self._closed = endpoint, False
            self._response, self._items, self._partial, self._error, self._done = None, deque(), b"", None, False
            try:
                await self._first(endpoint, body)
            except PoolConnectionError as exc:  # refused, reset, cut: the replica is gone (any other
                self._release()                    # PoolHttpError is the replica failing the sequence)
                if self._cancelled:  # cancel() aborted the opening: the replica did not fail
                    self._done = True
                    return
                self.pools.drop(self.pool, endpoint, f"{type(exc).__name__}: {exc}")
                continue
            except _WrongReplica:
                self.pools.drop(self.pool, endpoint, "another process answers at its address")
                continue
            except PoolHttpError as exc:
                self._release()
                raise _failure(exc) from None
            except BaseException:
                self._release()
                raise
            if self._cancelled:  # cancelled while opening (a sibling sequence failed): nothing more to read
                self._done = True
                self._items.clear()
                self._release()
            return

    async def _first(self, endpoint: Endpoint, body: bytes) -> None:
        """Open the stream and read up to its first item (or read the whole answer)."""
        self._call = self.pools.http.call(endpoint.url, body)
        self._response = await self._call.response()
        # A whole answer is one JSON body, or lines when progress items came before it.
        if self._response.status != 200 or (self.request.whole and self._response.content_type != _NDJSON):
            content = await self._response.read()
            self._done = True
            self._release()
            self._check(self._response.status, content)
            self._items.append(wire.decode_item(content))
            return
        while not self._items and not self._done:
            await self._read()
        if not self._items and self._error is None and not self._cancelled:
            raise EngineFailure("the replica ended the stream without an item")

    @staticmethod
    def _check(status: int, content: bytes) -> None:
        if status == 200:
            return
        if status == 404:
            raise _WrongReplica()
        try:
            payload = json.loads(content)
        except ValueError:
            raise EngineFailure(f"the replica answered HTTP {status}") from None
        raise wire.decode_error(payload)

    async def _finish(self) -> None:
        """The last item came: read the end of the body so the connection returns to the pool."""
        self._done = True
        try:
            await self._response.read()
        except PoolHttpError:
            pass
        finally:  # cancelled waiting for the end too: the connection is closed, not leaked
            self._release()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._endpoint is not None:
            self._endpoint.in_flight -= 1
        if self._response is not None:
            self._response.release()  # read whole: kept alive for reuse; mid-body: closed, which aborts the engine request

    def cancel(self) -> None:
        """Stop now (the client went away, or a sibling sequence failed); closing the connection aborts the engine."""
        self._done = self._cancelled = True
        self._items.clear()
        if not self._opening:
            self._release()
        elif self._call is not None:  # opening: close the connection under it, which aborts the engine request
            self._call.abort()


class _WrongReplica(Exception):
    """The address answered 404: the replica that reported it is gone."""
