"""The gateway's side of the data path: pool replicas' internal HTTP endpoints.

The router picks the pool; :class:`HttpPools` picks the replica (fewest
sequences this gateway has in flight there, ties broken at random) among the
endpoints the replicas reported in their polled stats, and relays the
replica's ``workers.wire`` lines over one shared ``httpx.AsyncClient``
(keep-alive connections, no per-request handshake). A replica that cannot be
reached, or answers for another replica, is dropped and the sequence tried
on the next one before its first item; when none is left the pool has
failed and the service fails over to the next pool (``gateway.service``).
Ray Serve's handles are kept for the stats polls only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from workers import wire
from workers.errors import EngineFailure
from workers.protocol import PoolRequest, RelayItem, ReplicaStats

log = logging.getLogger("hetserve.gateway.relay")


@dataclass
class Endpoint:
    replica: str
    url: str
    in_flight: int = 0


class HttpPools:
    """The service's view of pools (``gateway.service.PoolClient``): streams over HTTP, stats over Serve."""

    def __init__(self, handles: dict[str, Any], token: str, client: httpx.AsyncClient | None = None):
        self.handles = handles
        self.headers = {wire.TOKEN_HEADER: token, "content-type": "application/json"}
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512, keepalive_expiry=300),
        )
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
        if self.endpoints.get(pool, {}).pop(endpoint.replica, None) is not None:
            log.warning("pool %s: dropped replica %s at %s: %s", pool, endpoint.replica, endpoint.url, why)

    def pick(self, pool: str, exclude: set[str]) -> Endpoint | None:
        choices = [e for e in self.endpoints.get(pool, {}).values() if e.replica not in exclude]
        if not choices:
            return None
        if len(choices) > 2:
            choices = random.sample(choices, 2)  # power of two choices
        least = min(e.in_flight for e in choices)
        return random.choice([e for e in choices if e.in_flight == least])

    def stream(self, pool: str, request: PoolRequest) -> "HttpStream":
        return HttpStream(self, pool, request)

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpStream:
    """One sequence's relay items; ``cancel()`` closes the connection, which aborts the engine request."""

    def __init__(self, pools: HttpPools, pool: str, request: PoolRequest):
        self.pools, self.pool, self.request = pools, pool, request
        self._endpoint: Endpoint | None = None
        self._response: httpx.Response | None = None
        self._lines = None
        self._done = False
        self._closed = False
        self._cancelled = False
        self._opening = False

    def __aiter__(self) -> "HttpStream":
        return self

    async def __anext__(self) -> RelayItem:
        if self._done:
            raise StopAsyncIteration
        if self._lines is None:
            self._opening = True
            try:
                return await self._open()
            finally:
                self._opening = False
        try:
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            await self._release()
            raise
        except httpx.HTTPError as exc:
            await self._release()
            if isinstance(exc, httpx.TransportError):  # learned again from the next poll if it lives
                self.pools.drop(self.pool, self._endpoint, f"{type(exc).__name__}: {exc}")
            raise EngineFailure(f"the replica broke the stream: {type(exc).__name__}: {exc}") from None
        except BaseException:
            await self._release()
            raise
        return await self._item(line)

    async def _item(self, line: str) -> RelayItem:
        try:
            item = wire.decode_item(line)
        except BaseException:
            await self._release()
            raise
        if item.finish_reason is not None:
            await self._finish()
        return item

    async def _open(self) -> RelayItem:
        """Send the request to a replica; before the first item, a dead replica is dropped and the next tried."""
        tried: set[str] = set()
        body = wire.encode_request(self.request)
        while True:
            endpoint = self.pools.pick(self.pool, tried)
            if endpoint is None:
                why = "no replica reachable" if tried else "no replica endpoint known yet"
                raise EngineFailure(f"pool {self.pool}: {why}")
            tried.add(endpoint.replica)
            endpoint.in_flight += 1
            self._endpoint, self._response, self._lines, self._closed = endpoint, None, None, False
            try:
                first = await self._first(endpoint, body)
            except httpx.TransportError as exc:
                await self._release()
                self.pools.drop(self.pool, endpoint, f"{type(exc).__name__}: {exc}")
                continue
            except _WrongReplica:
                await self._release()
                self.pools.drop(self.pool, endpoint, "another process answers at its address")
                continue
            except BaseException:
                await self._release()
                raise
            if self._cancelled:  # cancelled while opening (a sibling sequence failed)
                await self._release()
            return first

    async def _first(self, endpoint: Endpoint, body: bytes) -> RelayItem:
        client = self.pools.client
        if self.request.whole:
            r = await client.post(endpoint.url, content=body, headers=self.pools.headers)
            self._check(r.status_code, r.content)
            self._done = True
            await self._release()
            return wire.decode_item(r.content)
        request = client.build_request("POST", endpoint.url, content=body, headers=self.pools.headers)
        self._response = await client.send(request, stream=True)
        if self._response.status_code != 200:
            content = await self._response.aread()
            self._check(self._response.status_code, content)
        self._lines = self._response.aiter_lines()
        return await self.__anext__()

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
            async for _ in self._lines:
                pass
        except httpx.HTTPError:
            pass
        await self._release()

    async def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._endpoint is not None:
            self._endpoint.in_flight -= 1
        if self._response is not None:
            await self._response.aclose()

    def cancel(self) -> None:
        """Stop now (the client went away, or a sibling sequence failed); closing the connection aborts the engine."""
        self._done = self._cancelled = True
        if not self._closed and not self._opening and self._endpoint is not None:
            asyncio.get_running_loop().create_task(self._release())


class _WrongReplica(Exception):
    """The address answered 404: the replica that reported it is gone."""
