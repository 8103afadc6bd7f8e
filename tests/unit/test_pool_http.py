"""The pool hop's HTTP/1.1 client (gateway.pool_http) against raw servers: framing, reuse, flow control,
cancellation, typed errors."""

from __future__ import annotations

import asyncio

import pytest

from gateway import pool_http
from gateway.pool_http import PoolConnectionError, PoolHttp, PoolProtocolError


class RawServer:
    """Answers each request on a connection with the next of ``answers`` (a list of byte chunks written one
    by one, with a yield between); counts connections and requests, and sees when a connection closes."""

    def __init__(self, answers: list[list[bytes]]):
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/generate/x"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                for chunk in self.answers[min(len(self.requests), len(self.answers)) - 1]:
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            writer.close()

    def close(self) -> None:
        self.server.close()


async def _received(server: RawServer) -> None:
    """Until the server has read a request."""
    async def wait():
        while not server.requests:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 10)


def _chunked(*parts: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(p), p) for p in parts), b"0\r\n\r\n"]


async def test_a_chunked_answer_written_in_pieces_reads_whole_and_its_connection_is_reused():
    server = RawServer([_chunked(b"one\n", b"two\n", b"three\n")])
    url = await server.start()
    http = PoolHttp({"x-token": "t"})
    for _ in range(3):
        response = await http.call(url, b'{"a": 1}').response()
        assert (response.status, response.content_type) == (200, "application/x-ndjson")
        assert await response.read() == b"one\ntwo\nthree\n"
        response.release()
    assert server.connections == 1 and len(server.requests) == 3
    assert b"x-token: t\r\n" in server.requests[0] and server.requests[0].endswith(b'{"a": 1}')
    await http.aclose()
    server.close()


async def test_an_answer_that_asks_to_close_is_not_reused():
    body = b'{"ok": true}'
    server = RawServer([[b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)]])
    url = await server.start()
    http = PoolHttp({})
    for _ in range(2):
        response = await http.call(url, b"{}").response()
        assert await response.read() == body
        response.release()
    assert server.connections == 2
    await http.aclose()
    server.close()


async def test_an_answer_released_before_its_end_closes_its_connection():
    server = RawServer([_chunked(b"one\n", b"two\n")])
    url = await server.start()
    http = PoolHttp({})
    response = await http.call(url, b"{}").response()
    assert (await response.chunk()).startswith(b"one")
    response.release()  # not read whole: the connection cannot serve another request
    await asyncio.wait_for(server.closed.wait(), 5)
    response = await http.call(url, b"{}").response()
    assert await response.read() == b"one\ntwo\n"
    assert server.connections == 2
    await http.aclose()
    server.close()


async def test_reading_stops_past_the_high_water_mark_and_resumes_as_the_reader_drains(monkeypatch):
    monkeypatch.setattr(pool_http, "HIGH_WATER", 64)
    parts = [bytes([65 + i % 26]) * 50 + b"\n" for i in range(40)]
    server = RawServer([_chunked(*parts)])
    url = await server.start()
    http = PoolHttp({})
    response = await http.call(url, b"{}").response()
    async def paused():  # the server writes on; past the high water mark the client stops reading
        while not response._conn._paused:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(paused(), 10)
    assert await response.read() == b"".join(parts)
    response.release()
    await http.aclose()
    server.close()


@pytest.mark.parametrize("answer, error", [
    ([b"HTTP/1.1 two hundred\r\n\r\n"], PoolProtocolError),  # no HTTP
    ([b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\nhalf"], PoolConnectionError),  # cut mid-body, then closed
])
async def test_a_broken_answer_is_a_typed_error(answer, error):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        for chunk in answer:
            writer.write(chunk)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    http = PoolHttp({})
    with pytest.raises(error):
        response = await http.call(url, b"{}").response()
        await response.read()
    await http.aclose()
    server.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
])
async def test_an_informational_answer_is_a_protocol_error(answer):
    server = RawServer([[answer]])
    url = await server.start()
    http = PoolHttp({})
    with pytest.raises(PoolProtocolError):
        await http.call(url, b"{}").response()
    await http.aclose()
    server.close()


async def test_bytes_after_an_answer_spoil_the_connection_not_the_answer_nor_the_next_one():
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    server = RawServer([[ok + b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbad"], [ok]])
    url = await server.start()
    http = PoolHttp({})
    for _ in range(2):
        response = await http.call(url, b"{}").response()
        assert await response.read() == b"ok"
        response.release()
    assert server.connections == 2  # the first connection was not reused
    await http.aclose()
    server.close()


async def _closing_server(answer_first: bool):
    """Answers the first request on each connection, closes the connection on the second without answering
    (as an endpoint closing a kept-alive connection the moment a request is sent on it); counts connections."""
    seen = {"connections": 0, "requests": 0}

    async def handle(reader, writer):
        seen["connections"] += 1
        for i in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
            seen["requests"] += 1
            if i == 1 or not answer_first:
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x", seen


async def test_a_kept_alive_connection_closed_under_a_request_is_retried_once_on_a_new_one(monkeypatch):
    monkeypatch.setattr(pool_http, "STALE_S", 5.0)  # what is tested is the retry, not how soon a close comes
    server, url, seen = await _closing_server(answer_first=True)
    http = PoolHttp({})
    for _ in range(2):
        response = await http.call(url, b"{}").response()
        assert await response.read() == b"ok"
        response.release()
    assert seen == {"connections": 2, "requests": 3}  # the second request went twice: closed under, then anew
    await http.aclose()
    server.close()


async def test_a_new_connection_closed_under_its_request_is_not_retried():
    server, url, seen = await _closing_server(answer_first=False)
    http = PoolHttp({})
    with pytest.raises(PoolConnectionError):
        await http.call(url, b"{}").response()
    assert seen == {"connections": 1, "requests": 1}
    await http.aclose()
    server.close()


async def test_a_refused_connection_is_a_connection_error():
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    with pytest.raises(PoolConnectionError):
        await PoolHttp({}).call(f"http://127.0.0.1:{port}/x", b"{}").response()


async def test_cancelled_while_waiting_for_the_head_closes_the_connection():
    server = RawServer([[]])  # never answers
    url = await server.start()
    http = PoolHttp({})
    task = asyncio.create_task(http.call(url, b"{}").response())
    await _received(server)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.closed.wait(), 5)  # the server saw the client leave: it aborts the request
    assert not http._idle.get(url)
    await http.aclose()
    server.close()


async def test_an_aborted_call_closes_its_connection_and_raises():
    server = RawServer([[]])  # never answers
    url = await server.start()
    http = PoolHttp({})
    call = http.call(url, b"{}")
    task = asyncio.create_task(call.response())
    await _received(server)
    call.abort()
    with pytest.raises(PoolConnectionError):
        await task
    await asyncio.wait_for(server.closed.wait(), 5)
    await http.aclose()
    server.close()


def test_only_plain_http_endpoints_are_served():
    with pytest.raises(ValueError, match="only http://"):
        PoolHttp({}).target("https://10.0.0.1:8443/generate/x")
