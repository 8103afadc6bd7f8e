"""The gateway's per-request layers in process: FastAPI's routing against the completions fast path.

Run: .venv/bin/python bench/asgi_layers.py [--rounds 5] [--requests 4000]

Drives ``gateway.app.api`` (the FastAPI app Serve wraps, its routes already
bound to the replica as Serve binds them) with in-memory ASGI calls: no
socket, no Ray, no engine, so the figures are the CPU of the layers alone and
hardly move with the machine's load. The replica is a stand-in whose
``complete`` reads the body and answers a small JSON, the same for both
paths:

- ``routed``: ``POST /v1/completions`` through FastAPI's router (exception
  middlewares, route matching, the dependency that injects the replica);
- ``fast path``: the same request answered by ``_CompletionsFastPath``, the
  ASGI middleware the gateway ships.

It also times what Serve's replica does with its access-log record on
every request (``logger.info`` with ``extra``) when the deployment's
``log_level`` is INFO (the record is built, then a handler's filter drops
it) against WARNING (the level check refuses it first). Rounds alternate the
variants; medians over rounds with their spread, microseconds of process
CPU per request. Results: ``bench/results/asgi_layers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from gateway import app as gateway_app  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BODY = b'{"model": "tiny-llama", "prompt": "hello", "max_tokens": 1}'


class Replica:
    """Stands for the Gateway instance: reads the body, answers a fixed completion."""

    async def complete(self, kind: str, request):
        await request.body()
        return JSONResponse({"object": "text_completion", "choices": [{"text": "x"}]})


def _stacks():
    """(routed, fast path): the app's middleware stack without and with the fast path."""
    api = gateway_app.api
    with_fast_path = list(api.user_middleware)
    api.user_middleware = [m for m in with_fast_path if m.cls is not gateway_app._CompletionsFastPath]
    routed = api.build_middleware_stack()
    api.user_middleware = with_fast_path
    return {"routed": routed, "fast path": api.build_middleware_stack()}


async def _drive(stack, requests: int) -> float:
    """CPU microseconds per request through ``stack``."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    status = []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    t0 = time.process_time()
    for _ in range(requests):
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/completions", "raw_path": b"/v1/completions", "root_path": "",
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
                 "app": gateway_app.api}
        await stack(scope, receive, send)
    cpu = time.process_time() - t0
    if set(status) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(status))}")
    return cpu * 1e6 / requests


def _access_logger(level: int) -> logging.Logger:
    """A logger like a replica's ``ray.serve`` one with its access log off: a handler whose filter drops the record."""
    logger = logging.getLogger(f"bench.asgi_layers.{logging.getLevelName(level)}")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())  # the filter drops every record here: nothing is written
    handler.addFilter(lambda record: not getattr(record, "serve_access_log", False))
    logger.handlers = [handler]
    logger.setLevel(level)
    return logger


def _access_log_us(logger: logging.Logger, requests: int) -> float:
    """CPU microseconds per Serve-style access-log call (an approximation of Serve's: its message is
    formatted before the call whatever the level, and its handler runs a context filter first)."""
    extra = {"serve_access_log": True, "route": "/v1/completions", "request_id": "r"}
    t0 = time.process_time()
    for _ in range(requests):
        logger.info("POST /v1/completions 200 %.1fms", 1.0, extra=extra)
    return (time.process_time() - t0) * 1e6 / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000, help="requests per variant and round")
    parser.add_argument("--out", type=Path, default=RESULTS / "asgi_layers.json")
    args = parser.parse_args(argv)
    gateway_app.serve.get_replica_context = lambda: SimpleNamespace(servable_object=Replica())
    stacks = _stacks()
    loggers = {"access log INFO": _access_logger(logging.INFO), "access log WARNING": _access_logger(logging.WARNING)}
    per: dict[str, list[dict]] = {name: [] for name in [*stacks, "access log INFO", "access log WARNING"]}
    for name, stack in stacks.items():  # warm-up
        asyncio.run(_drive(stack, 200))
    for rnd in range(args.rounds):
        names = list(stacks) if rnd % 2 == 0 else list(reversed(stacks))
        for name in names:
            per[name].append({"cpu_us_per_request": asyncio.run(_drive(stacks[name], args.requests))})
        for name, logger in loggers.items():
            per[name].append({"cpu_us_per_request": _access_log_us(logger, args.requests)})
        print(f"round {rnd + 1}: " + "  ".join(f"{n} {rows[-1]['cpu_us_per_request']:.1f}" for n, rows in per.items()),
              flush=True)
    cells = []
    for name, rows in per.items():
        cell = {"variant": name, "per_round": rows}
        cell.update(_load.medians(rows, ("cpu_us_per_request",)))
        cells.append(cell)
    _load.write_result(args.out, "asgi_layers", "asgi_layers.py", argv, _load.machine(),
                       requests_per_round=args.requests, cells=cells)
    print("\n| variant | CPU us per request (spread) |")
    print("|---|---|")
    for c in cells:
        print(f"| {c['variant']} | {_load.with_spread(c, 'cpu_us_per_request', '.1f')} |")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
