"""A fake OpenAI-compatible server, for tests, the overhead benchmark and dry runs.

It streams ``max_tokens`` tokens with a fixed time to first token and a
fixed gap per token (optionally at most ``capacity`` streams at once), answers ``/v1/models`` and a hetserve-style
``/v1/fleet`` whose energy grows with the tokens served, tags each response
with ``x-hetserve-pool`` (pools taken in turn) and ``x-request-id``, and can
fail requests with given HTTP statuses in turn. The same behaviour is
served through ``httpx.MockTransport`` (no socket) or a minimal HTTP/1.1
server on a loopback port (``python -m loadtests.fake_server --port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

import httpx

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error"}


@dataclass(frozen=True, slots=True)
class FakeConfig:
    ttft_s: float = 0.01
    itl_s: float = 0.002
    tokens_per_chunk: int = 1
    statuses: tuple[int, ...] = (200,)  # one per completion request, in turn
    pools: tuple[str, ...] = ("gpu-a", "npu-b")  # one per completion request, in turn
    capacity: int | None = None  # streams generated at once; more wait (a server that saturates)
    model: str = "fake-model"
    fleet: bool = True  # serve /v1/fleet
    joules_per_token: float = 0.1  # attributed; pool k spends (k+1) times this
    idle_share: float = 0.5  # total energy = attributed * (1 + idle_share)


@dataclass(slots=True)
class FakeReply:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    streaming: bool = False


class FakeOpenAI:
    def __init__(self, config: FakeConfig | None = None):
        self.config = config or FakeConfig()
        self._statuses = itertools.cycle(self.config.statuses)
        self._pools = itertools.cycle(self.config.pools)
        self._ids = itertools.count()
        self.tokens = {pool: 0 for pool in self.config.pools}
        self._slots = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None
        # request id -> seconds from handling the request to yielding its first chunk, as the
        # server saw it; the overhead benchmark subtracts it from the client's TTFT.
        self.first_chunk_s: dict[str, float] = {}

    def handle(self, method: str, path: str, body: bytes) -> FakeReply:
        if method == "GET" and path == "/v1/models":
            return _json(200, {"object": "list", "data": [{"id": self.config.model, "object": "model"}]})
        if method == "GET" and path == "/fake/first-chunk":
            return _json(200, self.first_chunk_s)
        if method == "GET" and path == "/v1/fleet" and self.config.fleet:
            pools = [self._pool_counters(i, name) for i, name in enumerate(self.config.pools)]
            return _json(200, {"policy": "fake", "pools": pools})
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            return self._completion(path.endswith("chat/completions"), json.loads(body))
        return _json(404, _error(404, f"no route {method} {path}"))

    def mock_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            reply = self.handle(request.method, request.url.path, await request.aread())
            return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

        return httpx.MockTransport(handler)

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        """Listen on ``host:port`` (0: a free port; read it from ``server.sockets``)."""
        return await asyncio.start_server(self._connection, host, port)

    def _completion(self, chat: bool, request: dict) -> FakeReply:
        status = next(self._statuses)
        if status != 200:
            return _json(status, _error(status, f"injected failure {status}"))
        received = time.perf_counter()
        pool = next(self._pools)
        request_id = f"fake-{next(self._ids)}"
        headers = {"x-hetserve-pool": pool, "x-request-id": request_id}
        tokens = int(request.get("max_tokens") or 16)
        text = request["messages"][-1]["content"] if chat else request["prompt"]
        usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + tokens
        self.tokens[pool] += tokens
        if request.get("stream"):
            headers["content-type"] = "text/event-stream"
            stream = self._stream(chat, tokens, usage, request_id, received)
            return FakeReply(200, headers, stream, streaming=True)
        reply = _json(200, self._whole(chat, tokens, usage))
        reply.headers.update(headers)
        reply.body = self._after(self.config.ttft_s + (tokens - 1) * self.config.itl_s, reply.body)
        return reply

    async def _stream(
        self, chat: bool, tokens: int, usage: dict, request_id: str, received: float
    ) -> AsyncIterator[bytes]:
        parts = self._tokens(chat, tokens, usage)
        if self._slots is not None:
            await self._slots.acquire()
        try:
            async for part in parts:
                if request_id not in self.first_chunk_s:
                    self.first_chunk_s[request_id] = time.perf_counter() - received
                yield part
        finally:
            if self._slots is not None:
                self._slots.release()

    async def _tokens(self, chat: bool, tokens: int, usage: dict) -> AsyncIterator[bytes]:
        start = time.perf_counter()
        per_chunk = self.config.tokens_per_chunk
        sent, due = 0, self.config.ttft_s
        while sent < tokens:
            await asyncio.sleep(start + due - time.perf_counter())
            n = 1 if sent == 0 else min(per_chunk, tokens - sent)
            sent += n
            choice = {"index": 0, "finish_reason": "length" if sent == tokens else None}
            if chat:
                choice["delta"] = {"content": "tok " * n}
            else:
                choice["text"] = "tok " * n
            yield _event({"object": "chat.completion.chunk" if chat else "text_completion", "choices": [choice]})
            due += per_chunk * self.config.itl_s
        yield _event({"choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _whole(chat: bool, tokens: int, usage: dict) -> dict:
        text = "tok " * tokens
        choice = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return {"object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": usage}

    @staticmethod
    async def _after(delay_s: float, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        await asyncio.sleep(delay_s)
        async for part in body:
            yield part

    def _pool_counters(self, index: int, name: str) -> dict:
        joules = self.tokens[name] * self.config.joules_per_token * (index + 1)
        return {
            "name": name,
            "hardware": name.split("-")[0],
            "output_tokens": self.tokens[name],
            "energy_joules": joules,
            "energy_total_joules": joules * (1 + self.config.idle_share),
            "power_source": "modelled",
        }

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve HTTP/1.1 keep-alive requests on one connection until the client closes it."""
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                fields = dict(line.split(":", 1) for line in lines if ":" in line)
                length = next((int(v) for k, v in fields.items() if k.strip().lower() == "content-length"), 0)
                reply = self.handle(method, path, await reader.readexactly(length))
                await _write(writer, reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _write(writer: asyncio.StreamWriter, reply: FakeReply) -> None:
    head = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
    head += [f"{k}: {v}" for k, v in reply.headers.items()]
    if reply.streaming:
        writer.write(("\r\n".join(head + ["transfer-encoding: chunked"]) + "\r\n\r\n").encode())
        async for part in reply.body:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        writer.write(b"0\r\n\r\n")
    else:
        body = b"".join([part async for part in reply.body])
        writer.write(("\r\n".join(head + [f"content-length: {len(body)}"]) + "\r\n\r\n").encode() + body)
    await writer.drain()


def _json(status: int, payload: dict) -> FakeReply:
    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(payload).encode()

    return FakeReply(status, {"content-type": "application/json"}, body())


def _error(status: int, message: str) -> dict:
    error_type = _ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": error_type, "param": None, "code": status}}


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft-ms", type=float, default=10.0)
    parser.add_argument("--itl-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(FakeConfig(ttft_s=args.ttft_ms / 1000, itl_s=args.itl_ms / 1000))

    async def serve_forever() -> None:
        server = await fake.serve("127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve_forever())


if __name__ == "__main__":
    main()
