"""A pool replica's internal HTTP endpoint: the data path, off Ray's per-item cost.

Each replica serves ``POST /generate/<replica id>`` on its own node (a free
port on the node's IP, in the replica's event loop); the gateway learns the
address from the replica's polled ``ReplicaStats.endpoint`` and relays over
keep-alive connections (``gateway.relay_http``). Ray Serve still owns the
deployment: placement, replicas, health checks, ``reconfigure``, the stats
polls. The bytes are ``workers.wire``'s.

A bare ASGI app, not a framework: this is the per-token hot path. The
endpoint pulls the first item before it answers, so an error before the
first token is an HTTP status; a client that goes away (the gateway
cancelled the request) cancels the generator, which aborts the engine request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Callable

import uvicorn

from workers import wire
from workers.protocol import PoolRequest, RelayItem

log = logging.getLogger("hetserve.pool.http")

Generate = Callable[[PoolRequest], AsyncIterator[RelayItem]]
_NDJSON = [(b"content-type", b"application/x-ndjson")]
_JSON = [(b"content-type", b"application/json")]


class EndpointApp:
    """The ASGI app: ``generate`` is the replica's relay-item generator."""

    def __init__(self, replica_id: str, token: str, generate: Generate):
        self.path = f"/generate/{replica_id}"
        self.token = token.encode()
        self.generate = generate

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        if scope["path"] != self.path:  # a stale address now used by another replica
            return await _answer(send, 404, _JSON, b'{"error":{"kind":"EngineFailure","message":"no such replica"}}')
        headers = dict(scope["headers"])
        if not hmac.compare_digest(headers.get(wire.TOKEN_HEADER.encode(), b""), self.token):
            return await _answer(send, 403, _JSON, b'{"error":{"kind":"EngineFailure","message":"bad internal token"}}')
        body = await _read_body(receive)
        if body is None:
            return
        request = wire.decode_request(body)
        stream = self.generate(request)
        # Watched from the start: a gateway that leaves while the engine has not answered yet (a queued
        # sequence, a whole answer being generated) aborts the engine request too.
        gone = _Disconnect(receive, asyncio.current_task())
        try:
            try:
                first = await stream.__anext__()
            except BaseException as exc:  # before the first byte: a status the gateway maps
                if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    raise
                gone.ending = True
                status, payload = wire.encode_error(exc)
                return await _answer(send, status, _JSON, payload)
            if request.whole and first.finish_reason is not None:  # one body; else progress items lead
                gone.ending = True
                return await _answer(send, 200, _JSON, wire.encode_item(first))
            await self._stream(first, stream, send, gone)
        except asyncio.CancelledError:
            if not gone.happened:
                raise
            # the gateway went away: ``aclose`` below aborts the engine request
        finally:
            gone.watcher.cancel()
            await stream.aclose()

    async def _stream(self, first: RelayItem, stream: AsyncIterator[RelayItem], send, gone: "_Disconnect") -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _NDJSON})
        item = first
        while True:
            last = item.finish_reason is not None
            gone.ending = last
            await send({"type": "http.response.body", "body": wire.encode_item(item) + b"\n", "more_body": not last})
            if last:
                return
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                gone.ending = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            except Exception as exc:  # after the first byte: an error line ends the stream
                gone.ending = True
                _, payload = wire.encode_error(exc)
                await send({"type": "http.response.body", "body": payload + b"\n", "more_body": False})
                return


class _Disconnect:
    """Watches ``receive`` and cancels the request's task when the gateway closes the connection before
    the answer's last bytes."""

    def __init__(self, receive, writer: asyncio.Task):
        self.ending = False  # the last bytes are going out: a disconnect now is the normal end
        self.happened = False
        self.watcher = asyncio.create_task(self._watch(receive, writer))

    async def _watch(self, receive, writer: asyncio.Task) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.ending:
            self.happened = True
            writer.cancel()


async def _read_body(receive) -> bytes | None:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send, status: int, headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """Leaves signals to the process that hosts it (a Ray Serve replica handles its own SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


#: How long a stopping replica lets its streams finish: within Serve's graceful_shutdown_timeout_s (20 s by
#: default), after which Serve kills the replica.
DRAIN_S = 15.0


class EndpointServer:
    """uvicorn on a free port of ``host``, run as a task of the current event loop."""

    def __init__(self, app: EndpointApp, host: str):
        # IPPROTO_TCP named, not 0: asyncio turns Nagle off only on sockets that say they are TCP, and with
        # Nagle on, a whole answer's body waits behind its head for the gateway's delayed ACK (40 ms)
        # wherever the replica's loop is asyncio's own rather than uvloop's.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}{app.path}"
        config = uvicorn.Config(
            app, lifespan="off", access_log=False, log_level="warning", http="httptools",
            timeout_keep_alive=300, server_header=False, date_header=False,
        )
        self.server = _Server(config)
        self.task: asyncio.Task | None = None

    def start(self) -> "EndpointServer":
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.sock]))
        return self

    async def stop(self, drain_s: float = DRAIN_S) -> None:
        """Refuse new connections at once (the gateway sends those to another replica) and let the
        streams in flight finish for up to ``drain_s``."""
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.task, drain_s)
        self.sock.close()
