"""The pool hop's HTTP/1.1 client: keep-alive connections to pool replicas' endpoints.

Every request on this hop is one POST to an endpoint we serve ourselves
(``workers.http_endpoint``) and an answer read as it arrives. A general
client pays per request for what this hop never uses (cookies, redirects,
per-request timeouts and trace hooks, a stream reader per response): with
aiohttp that was about a quarter of the gateway's Python time on 1-token
requests. This one is an ``asyncio.Protocol`` per connection with llhttp's
parser (``httptools``, the parser uvicorn serves the endpoint with), the
request head built once per endpoint; ``bench/relay_client.py`` measures it
against aiohttp and httpx side by side.

Connections are kept per endpoint and reused newest first. One left idle for
``IDLE_S`` is closed rather than reused, well inside the endpoint's
keep-alive (300 s), so the endpoint never closes one as a request is sent on
it; a reused connection that fails before any answer byte (closed under the
request anyway) is retried once on a new one. Errors are typed:
``PoolConnectionError`` when the connection fails (refused, reset, cut
mid-answer, connect timed out), ``PoolProtocolError`` when the peer answers
bytes that are no HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import urlsplit

import httptools

#: Seconds a connection may sit idle and still be reused.
IDLE_S = 60.0
CONNECT_TIMEOUT_S = 5.0
#: Bytes of answer buffered before the connection stops reading (the relay reads far faster).
HIGH_WATER = 1 << 20


class PoolHttpError(Exception):
    """The pool hop failed below the relay protocol."""


class PoolConnectionError(PoolHttpError):
    """The connection failed: refused, reset, closed mid-answer, or connecting timed out."""


class PoolProtocolError(PoolHttpError):
    """The peer answered bytes that are no HTTP/1.1 response."""


class Response:
    """One answer: its status and content type once its head has arrived, its body as it arrives."""

    __slots__ = ("_conn", "status", "content_type", "complete")

    def __init__(self, conn: "_Connection", status: int, content_type: str):
        self._conn = conn
        self.status = status
        self.content_type = content_type
        self.complete = False  # the whole body has been read out

    async def chunk(self) -> bytes:
        """The body bytes received since the last call (waiting for some); b"" once the body has ended."""
        data = await self._conn.body()
        if not data:
            self.complete = True
        return data

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while data := await self.chunk():
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the answer: a connection whose answer was read whole goes back for reuse, any other closes."""
        self._conn.finish(reuse=self.complete)

    def close(self) -> None:
        """Close the connection now (mid-answer, this tells the endpoint to abort the request)."""
        self._conn.finish(reuse=False)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: "PoolHttp", key: str):
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self.answered = False  # a byte of the current answer has arrived
        self._head: asyncio.Future | None = None
        self._waiter: asyncio.Future | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._ended = False
        self._error: BaseException | None = None
        self._content_type = ""
        self._keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PoolProtocolError(f"not an HTTP answer: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self._ended:
            why = f": {exc}" if exc else ""
            self._fail(PoolConnectionError(f"the replica closed the connection before the answer's end{why}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value.decode("latin-1").split(";", 1)[0].strip()

    def on_headers_complete(self) -> None:
        self._keep_alive = self.parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(Response(self, self.parser.get_status_code(), self._content_type))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._ended = True
        self._wake()

    # the request
    async def send(self, head: bytes, body: bytes) -> Response:
        self.answered = self._ended = False
        self._error, self._content_type, self._keep_alive = None, "", True
        self._chunks.clear()
        self._buffered = 0
        self._head = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        try:
            return await self._head
        except BaseException:  # failed, or cancelled waiting: the endpoint must not go on with it
            self.finish(reuse=False)
            raise

    async def body(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        return data

    def finish(self, reuse: bool) -> None:
        if reuse and self._ended and self._keep_alive and not self.lost:
            self.idle_since = time.monotonic()
            self.pool.idle(self)
        elif not self.lost:
            self.lost = True
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class PoolHttp:
    """Keep-alive connections to every endpoint, made in the event loop that uses them."""

    def __init__(self, headers: dict[str, str]):
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._targets: dict[str, tuple[str, int, str]] = {}  # url -> (host, port, head before content-length)
        self._idle: dict[str, list[_Connection]] = {}

    async def post(self, url: str, body: bytes) -> Response:
        """POST ``body`` to ``url`` and wait for the answer's head."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = self._target(url)
        host, port, head = target
        head = b"%scontent-length: %d\r\n\r\n" % (head.encode("latin-1"), len(body))
        conn = self._reusable(url)
        if conn is not None:
            try:
                return await conn.send(head, body)
            except PoolConnectionError:
                if conn.answered:
                    raise
                # closed under the request before any answer: once more on a new connection
        conn = await self._connect(url, host, port)
        return await conn.send(head, body)

    def idle(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.key, []).append(conn)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.finish(reuse=False)
        self._idle.clear()

    def _target(self, url: str) -> tuple[str, int, str]:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"pool endpoint {url!r}: only http://host:port/path is served")
        port = parts.port or 80
        path = parts.path or "/"
        return parts.hostname, port, f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n{self._extra}"

    def _reusable(self, url: str) -> _Connection | None:
        conns = self._idle.get(url)
        now = time.monotonic()
        while conns:
            conn = conns.pop()  # newest first: the one most surely still open
            if not conn.lost and now - conn.idle_since < IDLE_S:
                return conn
            conn.finish(reuse=False)
        return None

    async def _connect(self, url: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self, url), host, port), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise PoolConnectionError(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise PoolConnectionError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn
