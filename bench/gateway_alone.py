"""The gateway alone: relayed tokens/s per gateway core and gateway CPU per 1,000 tokens.

Run: .venv/bin/python bench/gateway_alone.py [--rounds 3] [--duration 6] [--concurrency 1,16,64]
                                              [--unary-concurrency 1,16] [--compare-separate-thread]
                                              [--baseline REF]

hetserve serves one emulated pool (``bench/fleets/emulated-relay.yaml``: an
emulated H100 at 20x its modelled speed, so no engine work) and the
benchmark client (``bench/_load.py``) streams 256-token completions at 1, 16
and 64 concurrent streams, then (``--unary-concurrency``) sends 1-token
requests without streaming, where what counts is the gateway's CPU per
request (at one client it is on every request's latency). The gateway's CPU is that of its process tree's
``proxy``, ``ingress`` and ``haproxy`` roles (``_servers.GATEWAY_ROLES``),
kept per role in each round; the pool replica (the emulated engine and its
endpoint) is reported apart. Servers not being measured are paused
(SIGSTOP), as in ``bench/peer.py``. Tokens per gateway CPU-second is what one
gateway core relays at saturation, the figure that sizes gateways for a
fleet whose engines are fast. Medians over rounds with their spread.

``--compare-separate-thread`` also starts hetserve with its replicas' code on
Ray Serve's default second event loop (``RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=1``,
``workers/serve_env.py``) and runs both in every round, alternating, so the
two differ only in that setting. ``--baseline REF`` adds hetserve as of git
commit ``REF`` the same way (the code before a change, beside it).
Results: ``bench/results/gateway_alone.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402
from peer import Variant  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FLEET = ROOT / "bench" / "fleets" / "emulated-relay.yaml"
MAX_TOKENS = 256


@dataclass(frozen=True)
class Cell:
    """What one cell sends: ``concurrency`` closed-loop clients, streamed 256-token or unary 1-token requests."""

    concurrency: int
    stream: bool

    @property
    def max_tokens(self) -> int:
        return MAX_TOKENS if self.stream else 1

    @property
    def name(self) -> str:
        return f"c={self.concurrency} {'stream' if self.stream else 'unary'}"


def run_cell(server, cell: Cell, duration_s: float, first_index: int) -> dict:
    cpu0 = server.cpu()
    samples, wall = asyncio.run(_load.closed_loop(
        server.url, concurrency=cell.concurrency, duration_s=duration_s, max_tokens=cell.max_tokens,
        stream=cell.stream, first_index=first_index))
    cpu = _servers.cpu_delta(cpu0, server.cpu())
    row = _load.summarize(samples, wall, cell.stream)
    tokens = max(row["output_tokens"], 1)
    gateway = _servers.gateway_cpu(cpu)
    row["gateway_cpu_s_by_role"] = {role: cpu.get(role, 0.0) for role in _servers.GATEWAY_ROLES}
    row["gateway_cpu_s"] = gateway
    row["gateway_cpu_us_per_request"] = gateway * 1e6 / max(row["requests"] - row["errors"], 1)
    if not cell.stream:
        return row
    row["gateway_cpu_s_per_1k_tok"] = gateway * 1000 / tokens
    row["gateway_cpu_us_per_event"] = gateway * 1e6 * (row["tokens_per_event"] or 1) / tokens
    row["tok_per_gateway_core_s"] = tokens / gateway if gateway else None
    row["gateway_cores_busy"] = gateway / wall
    row["pool_cpu_s_per_1k_tok"] = cpu.get("llm_replica", 0.0) * 1000 / tokens
    return row


def _row_order(cell: dict) -> tuple:
    """Table rows by concurrency, hetserve as it is first."""
    return cell["concurrency"], cell["server"] != "hetserve"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--concurrency", default="1,16,64", help="streamed cells: concurrent streams")
    parser.add_argument("--unary-concurrency", default="1,16", help="1-token unary cells: clients ('' for none)")
    parser.add_argument("--compare-separate-thread", action="store_true",
                        help="also run hetserve with Serve's default second event loop, alternating")
    parser.add_argument("--baseline", metavar="REF", help="also run hetserve as of git commit REF, alternating")
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway_alone.json")
    args = parser.parse_args(argv)
    variants = [Variant("hetserve", "hetserve")]
    if args.compare_separate_thread:
        variants.append(Variant("separate thread", "hetserve", {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}))
    with contextlib.ExitStack() as trees:
        if args.baseline:
            root = trees.enter_context(_servers.source_tree(args.baseline))
            variants.append(Variant(f"hetserve {args.baseline}", "hetserve", root=root))
        return _run(args, {v.label: v for v in variants}, argv)


def _run(args, variants: dict[str, Variant], argv: list[str] | None) -> int:
    levels = [Cell(int(c), True) for c in args.concurrency.split(",") if c] + [
        Cell(int(c), False) for c in args.unary_concurrency.split(",") if c]

    t0 = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="hetserve-bench-"))
    servers = {}
    per: dict[tuple[str, Cell], list[dict]] = {(v, c): [] for v in variants for c in levels}
    try:
        for label, v in variants.items():
            servers[label] = _servers.start_server(v.kind, label=f"hetserve-emulated-{len(servers)}", log_dir=log_dir,
                                                   env=v.env, root=v.root, fleet=str(FLEET))
            asyncio.run(_load.closed_loop(servers[label].url, concurrency=8, requests=16, max_tokens=32, stream=True,
                                          first_index=10**6))
            servers[label].pause()  # as peer.py: an idle Ray cluster beside the one measured takes its CPU
        index = 0
        for rnd in range(args.rounds):
            order = list(variants)[rnd % len(variants):] + list(variants)[: rnd % len(variants)]
            for c in levels:
                for label in order:
                    servers[label].resume()
                    row = run_cell(servers[label], c, args.duration, index)
                    servers[label].pause()
                    index += row["requests"]
                    per[(label, c)].append(row)
                    rate = f"{row['tok_s']:>7.0f} tok/s" if c.stream else f"{row['req_s']:>7.0f} req/s"
                    print(f"round {rnd + 1} {label:<16} {c.name:<12} {rate}  gateway {row['gateway_cpu_s']:.2f} CPU-s"
                          f"  {row['gateway_cpu_us_per_request']:.0f} CPU-us/request  errors {row['errors']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    cells = []
    for (label, c), rows in per.items():
        cell = {"server": label, "env": variants[label].env, "concurrency": c.concurrency, "stream": c.stream,
                "max_tokens": c.max_tokens, "errors": sum(r["errors"] for r in rows), "per_round": rows}
        keys = ("tok_s", "gateway_cpu_s_per_1k_tok", "gateway_cpu_us_per_event", "tok_per_gateway_core_s",
                "gateway_cores_busy", "pool_cpu_s_per_1k_tok", "tokens_per_event", "ttft_ms_p50", "itl_ms_p99")
        unary_keys = ("req_s", "gateway_cpu_us_per_request", "e2e_ms_p50", "e2e_ms_p99")
        cell.update(_load.medians(rows, keys if c.stream else unary_keys))
        cells.append(cell)
    _load.write_result(args.out, "gateway_alone", "gateway_alone.py", argv, _load.machine(),
                       fleet=str(FLEET.relative_to(ROOT)), elapsed_s=round(time.monotonic() - t0, 1), cells=cells)
    streamed = [c for c in cells if c["stream"]]
    unary = [c for c in cells if not c["stream"]]
    if streamed:
        print("\n| server | streams | tok/s | tokens per event | gateway cores busy | gateway CPU s/1k tok"
              " | gateway CPU us per event | tok/s per gateway core (spread) | pool CPU s/1k tok | err |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for c in sorted(streamed, key=_row_order):
            print(f"| {c['server']} | {c['concurrency']} | {c['tok_s']:,.0f} | {c['tokens_per_event']:.1f}"
                  f" | {c['gateway_cores_busy']:.2f} | {c['gateway_cpu_s_per_1k_tok']:.3f}"
                  f" | {c['gateway_cpu_us_per_event']:.0f} | {_load.with_spread(c, 'tok_per_gateway_core_s', ',.0f')}"
                  f" | {c['pool_cpu_s_per_1k_tok']:.3f} | {c['errors']} |")
    if unary:
        print("\n| server | clients (1-token unary) | req/s | latency p50 ms | latency p99 ms"
              " | gateway CPU us per request (spread) | err |")
        print("|---|---|---|---|---|---|---|")
        for c in sorted(unary, key=_row_order):
            print(f"| {c['server']} | {c['concurrency']} | {c['req_s']:,.0f} | {c['e2e_ms_p50']:.2f}"
                  f" | {c['e2e_ms_p99']:.2f} | {_load.with_spread(c, 'gateway_cpu_us_per_request', ',.0f')}"
                  f" | {c['errors']} |")
    print(f"\nresults: {args.out}")
    return 1 if any(c["errors"] for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
