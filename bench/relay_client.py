"""The gateway's HTTP client for the pool hop against httpx and aiohttp, side by side in one run.

Run: .venv/bin/python bench/relay_client.py [--rounds 5] [--streams 16] [--lines 2000]

A pool endpoint (``workers.http_endpoint``, the replicas' own server) runs in
a child process and streams ``--lines`` relay items per request as fast as
it can; the parent relays ``--streams`` such requests at once with each
client, decoding every item as the gateway does, and reads its own CPU time.
``hetserve`` is the gateway's own relay (``gateway.relay_http.HttpPools``
over ``gateway.pool_http``); the httpx and aiohttp clients decode the same
lines with ``workers.wire`` (aiohttp as the relay used it before
``gateway.pool_http``: one session, each network read split into lines).
Two figures per client: CPU microseconds per relayed line (the streaming
cost) and per request opened and finished (a 1-token request's relay cost,
from ``--opens`` whole one-item requests). Clients alternate within each
round; medians over rounds with their spread.
Results: ``bench/results/relay_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
from gateway.relay_http import HttpPools  # noqa: E402
from workers import wire  # noqa: E402
from workers.engine import SamplingParams  # noqa: E402
from workers.http_endpoint import EndpointApp, EndpointServer  # noqa: E402
from workers.protocol import PoolRequest, RelayItem  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TOKEN = "bench"
POOL = "bench"


def _serve(urls, lines: int) -> None:
    async def generate(request: PoolRequest):
        n = 1 if request.whole else lines
        for i in range(n):
            yield RelayItem(" tok", 12, i + 1, "length" if i == n - 1 else None)
            if i % 8 == 7:
                await asyncio.sleep(0)  # let the other streams' lines interleave

    async def main() -> None:
        server = EndpointServer(EndpointApp("bench", TOKEN, generate), "127.0.0.1").start()
        urls.put(server.url)
        await asyncio.Event().wait()

    asyncio.run(main())


def _body(whole: bool) -> bytes:
    return wire.encode_request(PoolRequest(uuid.uuid4().hex, SamplingParams(max_tokens=1), prompt="x", whole=whole))


async def _measure(stream_one, open_one, streams: int, opens: int) -> tuple[int, float, float]:
    """Lines relayed, CPU seconds per line over ``streams`` streams at once, CPU seconds per whole request."""
    t0 = time.process_time()
    lines = sum(await asyncio.gather(*(stream_one() for _ in range(streams))))
    per_line = (time.process_time() - t0) / lines
    t0 = time.process_time()
    for _ in range(opens):
        await open_one()
    return lines, per_line, (time.process_time() - t0) / opens


async def _httpx(url: str, streams: int, opens: int) -> tuple[int, float, float]:
    import httpx

    headers = {wire.TOKEN_HEADER: TOKEN}
    async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None)) as client:
        async def stream_one() -> int:
            n = 0
            async with client.stream("POST", url, content=_body(False), headers=headers) as r:
                async for line in r.aiter_lines():
                    wire.decode_item(line)
                    n += 1
            return n

        async def open_one() -> None:
            wire.decode_item((await client.post(url, content=_body(True), headers=headers)).content)

        return await _measure(stream_one, open_one, streams, opens)


async def _aiohttp(url: str, streams: int, opens: int) -> tuple[int, float, float]:
    import aiohttp

    headers = {wire.TOKEN_HEADER: TOKEN, "content-type": "application/json"}
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=300),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))

    async def stream_one() -> int:
        n, partial = 0, b""
        async with session.post(url, data=_body(False), headers=headers) as r:
            while chunk := await r.content.readany():
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    wire.decode_item(line)
                    n += 1
        return n

    async def open_one() -> None:
        async with session.post(url, data=_body(True), headers=headers) as r:
            wire.decode_item(await r.read())

    try:
        return await _measure(stream_one, open_one, streams, opens)
    finally:
        await session.close()


async def _hetserve(url: str, streams: int, opens: int) -> tuple[int, float, float]:
    """The gateway's own relay (``gateway.relay_http`` over ``gateway.pool_http``, with its replica choice)."""
    pools = HttpPools({}, TOKEN)
    pools.add(POOL, "bench-replica", url)

    def request(whole: bool) -> PoolRequest:
        return PoolRequest(uuid.uuid4().hex, SamplingParams(max_tokens=1), prompt="x", whole=whole)

    async def stream_one() -> int:
        n = 0
        async for _ in pools.stream(POOL, request(False)):
            n += 1
        return n

    async def open_one() -> None:
        async for _ in pools.stream(POOL, request(True)):
            pass

    try:
        return await _measure(stream_one, open_one, streams, opens)
    finally:
        await pools.aclose()


CLIENTS = {"httpx": _httpx, "aiohttp": _aiohttp, "hetserve": _hetserve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--lines", type=int, default=2000, help="lines per streamed request")
    parser.add_argument("--opens", type=int, default=1000, help="whole one-item requests per round")
    parser.add_argument("--out", type=Path, default=RESULTS / "relay_client.json")
    args = parser.parse_args(argv)

    urls: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(urls, args.lines), daemon=True)
    server.start()
    url = urls.get(timeout=60)
    per: dict[str, list[dict]] = {name: [] for name in CLIENTS}
    try:
        for name, run in CLIENTS.items():  # warm-up, not recorded
            asyncio.run(run(url, 2, 10))
        for rnd in range(args.rounds):
            order = list(CLIENTS) if rnd % 2 == 0 else list(reversed(CLIENTS))
            for name in order:
                lines, per_line, per_open = asyncio.run(CLIENTS[name](url, args.streams, args.opens))
                per[name].append({"lines": lines, "cpu_us_per_line": per_line * 1e6, "cpu_us_per_request": per_open * 1e6})
                print(f"round {rnd + 1} {name:<8} {per_line * 1e6:6.1f} CPU-us/line  {per_open * 1e6:7.1f} CPU-us/request",
                      flush=True)
    finally:
        server.terminate()

    clients = []
    for name, rows in per.items():
        clients.append({"client": name, "per_round": rows,
                        **_load.medians(rows, ("cpu_us_per_line", "cpu_us_per_request"))})
    ref = clients[0]
    _load.write_result(args.out, "relay_client", "relay_client.py", argv, _load.machine(), streams=args.streams,
                       lines=args.lines, opens=args.opens, clients=clients)
    print("\n| client | CPU us per relayed line (spread) | vs httpx | CPU us per request (spread) | vs httpx |")
    print("|---|---|---|---|---|")
    for c in clients:
        print(f"| {c['client']} | {_load.with_spread(c, 'cpu_us_per_line', '.1f')}"
              f" | {c['cpu_us_per_line'] / ref['cpu_us_per_line']:.2f}x"
              f" | {_load.with_spread(c, 'cpu_us_per_request', '.0f')}"
              f" | {c['cpu_us_per_request'] / ref['cpu_us_per_request']:.2f}x |")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
