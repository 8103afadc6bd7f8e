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
keep-alive (300 s), so the endpoint seldom closes one as a request is sent
on it; when a reused connection fails within ``STALE_S`` of the request
without an answer byte (closed under it), the request is sent once more on a
new connection. A later failure is not retried: the endpoint may have
started the request. Errors are typed: ``PoolConnectionError`` when the
connection fails (refused, reset, cut mid-answer, connecting timed out, or
closed by ``Call.abort``), ``PoolProtocolError`` when the peer answers what
no request asked for or bytes that are no HTTP/1.1 answer. The endpoint
answers with a length or in chunks; an answer that ends only when its
connection closes is not read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from urllib.parse import urlsplit

import httptools

#: Seconds a connection may sit idle and still be reused.
IDLE_S = 60.0
#: A reused connection failing this soon after the request, with no answer byte, was closed under it.
STALE_S = 0.05
CONNECT_TIMEOUT_S = 5.0
#: Bytes of answer buffered before the connection stops reading (the relay reads far faster).
HIGH_WATER = 1 << 20


class PoolHttpError(Exception):
    """The pool hop failed below the relay protocol."""


class PoolConnectionError(PoolHttpError):
    """The connection failed: refused, reset, closed mid-answer, connecting timed out, or aborted."""


class PoolProtocolError(PoolHttpError):
    """The peer answered bytes that are no HTTP/1.1 answer to the request."""


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
        """Done with the answer: a connection whose answer was read whole goes back for reuse, any other closes
        (mid-answer, that tells the endpoint to abort the request)."""
        self._conn.finish(reuse=self.complete)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: "PoolHttp", key: str):
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False  # closed, or closing: never reused
        self.idle_since = 0.0
        self.answered = False  # a byte of the current answer has arrived
        self._stray = False  # the peer began an answer no request asked for
        self._head: asyncio.Future | None = None
        self._waiter: asyncio.Future | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._ended = True  # no answer under way: the last one ended, or none was asked for yet
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
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(PoolProtocolError(f"not an HTTP answer: {type(exc).__name__}: {exc}"))
            self.close()
            return
        if self._stray:
            self._fail(PoolProtocolError("the replica answered out of turn (an answer no request asked for, "
                                         "or an informational one)"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        why = f": {exc}" if exc else ""
        self._fail(PoolConnectionError(f"the replica closed the connection before the answer's end{why}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._ended:
            self._stray = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._stray and name.lower() == b"content-type":
            self._content_type = value.decode("latin-1").split(";", 1)[0].strip()

    def on_headers_complete(self) -> None:
        if self._stray:
            return
        status = self.parser.get_status_code()
        if status < 200:  # the endpoint sends no informational answers
            self._stray = True
            return
        self._keep_alive = self.parser.should_keep_alive()
        if not self._head.done():
            self._head.set_result(Response(self, status, self._content_type))

    def on_body(self, body: bytes) -> None:
        if self._stray:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._stray:
            return
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
            self.close()
            raise

    async def body(self) -> bytes:
        while not self._chunks:
            if self._ended:  # a failure after the answer's end (junk behind it) spoils only the connection
                return b""
            if self._error is not None:
                raise self._error
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
        else:
            self.close()

    def close(self) -> None:
        if not self.lost:
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


class Call:
    """One request in flight until its answer's head: ``abort()`` closes its connection (or the one it is
    still opening), and ``response()`` then raises ``PoolConnectionError``."""

    __slots__ = ("_http", "_url", "_body", "_conn", "aborted")

    def __init__(self, http: "PoolHttp", url: str, body: bytes):
        self._http, self._url, self._body = http, url, body
        self._conn: _Connection | None = None
        self.aborted = False

    async def response(self) -> Response:
        """Send the request and wait for the answer's head."""
        http = self._http
        host, port, head = http.target(self._url)
        head = b"%scontent-length: %d\r\n\r\n" % (head, len(self._body))
        conn = self._conn = http.reusable(self._url)
        if conn is not None:
            sent = time.monotonic()
            try:
                return await conn.send(head, self._body)
            except PoolConnectionError:
                if conn.answered or self.aborted or time.monotonic() - sent > STALE_S:
                    raise
        conn = self._conn = await http.connect(self._url, host, port)
        if self.aborted:
            conn.close()
            raise PoolConnectionError("aborted")
        return await conn.send(head, self._body)

    def abort(self) -> None:
        self.aborted = True
        if self._conn is not None:
            self._conn.close()


class PoolHttp:
    """Keep-alive connections to every endpoint, made in the event loop that uses them."""

    def __init__(self, headers: dict[str, str]):
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._targets: dict[str, tuple[str, int, bytes]] = {}  # url -> (host, port, head before content-length)
        self._idle: dict[str, deque[_Connection]] = {}
        self._closed = False

    def call(self, url: str, body: bytes) -> Call:
        """A POST of ``body`` to ``url``; ``await call.response()`` sends it."""
        return Call(self, url, body)

    def target(self, url: str) -> tuple[str, int, bytes]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"pool endpoint {url!r}: only http://host:port/path is served")
            head = f"POST {parts.path or '/'} HTTP/1.1\r\nhost: {parts.netloc}\r\n{self._extra}".encode("latin-1")
            found = self._targets[url] = (parts.hostname, parts.port or 80, head)
        return found

    def reusable(self, url: str) -> _Connection | None:
        conns = self._idle.get(url)
        now = time.monotonic()
        while conns:
            conn = conns.pop()  # newest first: the one most surely still open
            if not conn.lost and not conn.transport.is_closing() and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    def idle(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conns = self._idle.setdefault(conn.key, deque())
        conns.append(conn)
        while conns[0] is not conn and (conns[0].lost or conn.idle_since - conns[0].idle_since >= IDLE_S):
            conns.popleft().close()  # the oldest first: expired, or closed by the endpoint

    def forget(self, url: str) -> None:
        """Close the idle connections to ``url`` (its replica is gone)."""
        for conn in self._idle.pop(url, ()):
            conn.close()

    async def connect(self, url: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):  # not wait_for: on 3.11 it can swallow a cancel
                _, conn = await loop.create_connection(lambda: _Connection(self, url), host, port)
        except TimeoutError:
            raise PoolConnectionError(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise PoolConnectionError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
