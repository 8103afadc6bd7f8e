"""The pool hop three ways in one Ray cluster: Serve handle streams, Serve's gRPC transport, hetserve's HTTP relay.

Run: .venv/bin/python bench/pool_hop_transport.py [--rounds 5] [--duration 5] [--streams 1,16]

Two Serve deployments stand for the gateway replica (``Caller``) and a pool
replica (``Pool``), with hetserve's replica settings (``workers.serve_env``).
The pool yields the same relay items (``workers.protocol.RelayItem``) as
fast as it can over each transport, and the caller relays them:

- ``handle``: a streaming ``DeploymentHandle`` call, Ray's default transport
  (each item a Ray object reference; how hetserve's gateway called its pools
  before ``docs/architecture.md``'s data path);
- ``handle-grpc``: the same call with ``_by_reference=False``, Serve's gRPC
  between deployments (``RAY_SERVE_USE_GRPC_BY_DEFAULT=1`` makes it the
  default): items pickled and sent over the replica's own gRPC server;
- ``http``: what hetserve runs, the pool replica's endpoint
  (``workers.http_endpoint``) and the gateway's relay over it
  (``gateway.relay_http.HttpPools``), items as wire lines.

Per transport and round: streams of ``--lines`` items at each ``--streams``
for ``--duration`` seconds (items/s, CPU per item), then whole one-item
requests from one client for as long (latency, CPU per request). CPU is every
process of the cluster but this driver, read by ``/proc`` (caller replica,
pool replica, Ray's own processes: GCS, raylet, Serve's controller), so a
transport that moves work into Ray's daemons is charged for it. Transports
alternate in each round, the order reversed every other round; medians over
rounds with their spread. Results: ``bench/results/pool_hop_transport.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402
from workers.engine import SamplingParams  # noqa: E402
from workers.protocol import PoolRequest, RelayItem  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TRANSPORTS = ("handle", "handle-grpc", "http")
TOKEN = "bench"
APP = "pool_hop"


def _role(cmdline: list[str], name: str) -> str:
    title = " ".join(cmdline) if cmdline else name
    if f"ServeReplica:{APP}:Caller" in title:
        return "caller"
    if f"ServeReplica:{APP}:Pool" in title:
        return "pool"
    if "pool_hop_transport.py" in title:
        return "driver"
    return "ray"


def _request(whole: bool) -> PoolRequest:
    return PoolRequest(uuid.uuid4().hex, SamplingParams(max_tokens=1), prompt="x", whole=whole)


def _deployments(lines: int):
    from ray import serve

    from gateway.relay_http import HttpPools
    from workers.http_endpoint import EndpointApp, EndpointServer
    from workers.serve_env import with_replica_env

    options = with_replica_env({"num_cpus": 0})

    @serve.deployment(max_ongoing_requests=10_000, ray_actor_options=options)
    class Pool:
        def __init__(self):
            self._server: EndpointServer | None = None

        async def url(self) -> str:
            if self._server is None:
                self._server = EndpointServer(EndpointApp(APP, TOKEN, self.stream), "127.0.0.1").start()
            while not self._server.server.started:  # listening
                await asyncio.sleep(0.01)
            return self._server.url

        async def stream(self, request: PoolRequest):
            n = 1 if request.whole else lines
            for i in range(n):
                yield RelayItem(" tok", 12, i + 1, "length" if i == n - 1 else None)
                if i % 8 == 7:
                    await asyncio.sleep(0)  # let the other streams' items interleave

        async def whole(self, request: PoolRequest) -> RelayItem:
            return RelayItem(" tok", 12, 1, "length")

    @serve.deployment(max_ongoing_requests=10_000, ray_actor_options=options)
    class Caller:
        def __init__(self, pool):
            self._handles = {"handle": pool, "handle-grpc": pool.options(_by_reference=False)}
            self._http: HttpPools | None = None

        async def _pools(self) -> HttpPools:
            if self._http is None:
                self._http = HttpPools({}, TOKEN)
                self._http.add(APP, "pool-0", await self._handles["handle"].url.remote())
            return self._http

        async def _stream(self, transport: str, whole: bool) -> int:
            n = 0
            if transport == "http":
                async for _ in (await self._pools()).stream(APP, _request(whole)):
                    n += 1
            elif whole:
                await self._handles[transport].whole.remote(_request(True))
                n = 1
            else:
                async for _ in self._handles[transport].options(stream=True).stream.remote(_request(False)):
                    n += 1
            return n

        async def streams(self, transport: str, streams: int, duration_s: float) -> dict:
            """Closed-loop streams for ``duration_s``: items relayed and the wall time."""
            end = time.perf_counter() + duration_s
            t0 = time.perf_counter()

            async def client() -> int:
                n = 0
                while time.perf_counter() < end:
                    n += await self._stream(transport, False)
                return n

            items = sum(await asyncio.gather(*(client() for _ in range(streams))))
            return {"items": items, "wall_s": time.perf_counter() - t0}

        async def wholes(self, transport: str, duration_s: float) -> dict:
            """One client's whole one-item requests for ``duration_s``: their latencies."""
            end = time.perf_counter() + duration_s
            latencies = []
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await self._stream(transport, True)
                latencies.append(time.perf_counter() - t0)
            return {"requests": len(latencies), "latency_ms_p50": 1e3 * _load.pct(latencies, 50),
                    "latency_ms_p99": 1e3 * _load.pct(latencies, 99)}

    return Caller.bind(Pool.bind())


def _measured(call, driver_pid: int) -> tuple[dict, dict[str, float]]:
    """``call()``'s result and the CPU seconds each role spent meanwhile (this driver apart)."""
    before = _servers.cpu_by_role(driver_pid, _role)
    out = call()
    cpu = _servers.cpu_delta(before, _servers.cpu_by_role(driver_pid, _role))
    cpu.pop("driver", None)
    return out, cpu


def run_round(caller, transport: str, streams: list[int], duration_s: float) -> dict:
    row: dict = {"transport": transport}
    pid = os.getpid()
    for s in streams:
        out, cpu = _measured(lambda: caller.streams.remote(transport, s, duration_s).result(), pid)
        row[f"items_{s}"] = out["items"]
        row[f"items_s_{s}"] = out["items"] / out["wall_s"]
        row[f"cpu_us_per_item_{s}"] = 1e6 * sum(cpu.values()) / out["items"]
        row[f"cpu_by_role_{s}"] = {k: 1e6 * v / out["items"] for k, v in cpu.items()}
    out, cpu = _measured(lambda: caller.wholes.remote(transport, duration_s).result(), pid)
    row["wholes"] = out["requests"]
    row["whole_latency_ms_p50"] = out["latency_ms_p50"]
    row["whole_latency_ms_p99"] = out["latency_ms_p99"]
    row["cpu_us_per_whole"] = 1e6 * sum(cpu.values()) / out["requests"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--streams", default="1,16", help="concurrent streams, comma-separated")
    parser.add_argument("--lines", type=int, default=64, help="items per streamed request")
    parser.add_argument("--out", type=Path, default=RESULTS / "pool_hop_transport.json")
    args = parser.parse_args(argv)
    streams = [int(s) for s in args.streams.split(",") if s]

    import ray
    from ray import serve

    from deploy.ingress import local_cluster_env

    with local_cluster_env():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        caller = serve.run(_deployments(args.lines), name=APP, route_prefix=None)
        for transport in TRANSPORTS:  # warm-up, not recorded
            run_round(caller, transport, streams, 0.5)
        per: dict[str, list[dict]] = {t: [] for t in TRANSPORTS}
        for rnd in range(args.rounds):
            for transport in TRANSPORTS if rnd % 2 == 0 else reversed(TRANSPORTS):
                row = run_round(caller, transport, streams, args.duration)
                per[transport].append(row)
                print(f"round {rnd + 1} {transport:<12} " + "  ".join(
                    f"{s}: {row[f'items_s_{s}']:8,.0f} items/s {row[f'cpu_us_per_item_{s}']:6.1f} CPU-us/item"
                    for s in streams) + f"  whole: {row['whole_latency_ms_p50']:.2f} ms"
                    f" {row['cpu_us_per_whole']:.0f} CPU-us", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    keys = [k for s in streams for k in (f"items_s_{s}", f"cpu_us_per_item_{s}")]
    keys += ["whole_latency_ms_p50", "whole_latency_ms_p99", "cpu_us_per_whole"]
    rows = [{"transport": t, "per_round": per[t], **_load.medians(per[t], keys),
             **{f"cpu_us_per_item_by_role_{s}": _role_medians(per[t], s) for s in streams}} for t in TRANSPORTS]
    _load.write_result(args.out, "pool_hop_transport", "pool_hop_transport.py", argv, _load.machine(),
                       rounds=args.rounds, duration_s=args.duration, lines=args.lines, transports=rows)
    print(table(rows, streams))
    print("\nCPU us per item by process, medians (caller / pool / Ray's processes):")
    for r in rows:
        print(f"- {r['transport']}: " + "; ".join(
            f"{s} streams " + " / ".join(f"{r[f'cpu_us_per_item_by_role_{s}'].get(role, 0.0):.0f}"
                                         for role in ("caller", "pool", "ray")) for s in streams))
    print(f"\nresults: {args.out}")
    return 0


def _role_medians(rounds: list[dict], streams: int) -> dict[str, float]:
    """Each process role's CPU µs per item at ``streams``, the median over rounds."""
    by_role = [r[f"cpu_by_role_{streams}"] for r in rounds]
    return {role: statistics.median(b.get(role, 0.0) for b in by_role) for role in sorted({k for b in by_role for k in b})}


def table(rows: list[dict], streams: list[int]) -> str:
    head = "| transport | " + " | ".join(f"items/s at {s} (spread) | CPU us per item at {s}" for s in streams)
    head += " | whole request p50 ms (spread) | p99 ms | CPU us per whole request |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["transport"]]
        for s in streams:
            cells += [_load.with_spread(r, f"items_s_{s}", ",.0f"), _load.with_spread(r, f"cpu_us_per_item_{s}", ".1f")]
        cells += [_load.with_spread(r, "whole_latency_ms_p50", ".2f"), f"{r['whole_latency_ms_p99']:.2f}",
                  _load.with_spread(r, "cpu_us_per_whole", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
