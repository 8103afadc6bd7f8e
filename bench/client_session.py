"""Where the load generator runs: in the servers' session, or in a session of its own, on the same machine.

Run: .venv/bin/python bench/client_session.py [--servers vllm,hetserve] [--rounds 4] [--duration 6] [--streams 16]

Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``)
puts each session's processes in one group and shares the CPU between
groups first. vLLM's CPU engine busy-waits between steps, calling
``sched_yield``, and a yield gives the CPU only to tasks of the same
group. A client in another session then waits longer for a CPU that the
engine is only spinning on. ``bench/peer.py`` starts its servers as
children of the harness, and its load generator runs in the harness: one
session. A load test in another terminal, or a service, is in a session of
its own, and so is ``hetserve serve``'s server (``hetserve/supervise.py``).

Each server is started once and paused while another one is measured, as in
``bench/peer.py``. In each round, a closed loop of ``--streams`` streamed
64-token requests (``bench/_load.py``) runs for ``--duration`` seconds per
server, twice. Both loops run in a child process: once in the harness's
session (``same``) and once with ``setsid`` (``own``). The order alternates
between rounds.
Results: ``bench/results/client_session.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402

ARMS = ("same", "own")
AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def client(url: str, streams: int, duration_s: float) -> dict:
    """One closed loop, in this process; the summary row (``_load.summarize``)."""
    samples, wall = asyncio.run(_load.closed_loop(url, concurrency=streams, duration_s=duration_s, max_tokens=64,
                                                  stream=True))
    return _load.summarize(samples, wall, True)


def run_arm(url: str, streams: int, duration_s: float, arm: str) -> dict:
    """:func:`client` in a child process, in this session (``same``) or in a new one (``own``)."""
    done = subprocess.run([sys.executable, __file__, "--client", url, "--streams", str(streams),
                           "--duration", str(duration_s)],
                          capture_output=True, text=True, start_new_session=(arm == "own"), timeout=duration_s + 120)
    if done.returncode != 0:
        raise RuntimeError(f"the client failed ({arm}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="vllm,hetserve")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per loop")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # the child: one loop, a JSON row
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "client_session.json")
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client(args.client, args.streams, args.duration)))
        return 0
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    keys = ("tok_s", "ttft_ms_p50", "itl_ms_p50")
    rows: dict[str, dict[str, list[dict]]] = {k: {arm: [] for arm in ARMS} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="client-session-") as logs:
        servers = {}
        try:
            for kind in kinds:
                servers[kind] = _servers.start_server(kind, log_dir=Path(logs))
                servers[kind].pause()
            for rnd in range(args.rounds):
                for kind, server in servers.items():
                    server.resume()
                    for arm in ARMS if rnd % 2 == 0 else ARMS[::-1]:
                        row = run_arm(server.url, args.streams, args.duration, arm)
                        rows[kind][arm].append(row)
                        print(f"round {rnd + 1} {kind:<9} client session {arm:<4} {row['tok_s']:7.0f} tok/s  "
                              f"TTFT p50 {row['ttft_ms_p50']:.1f} ms  errors {row['errors']}", flush=True)
                    server.pause()
        finally:
            for server in servers.values():
                server.stop()
    cells = []
    for kind in kinds:
        for arm in ARMS:
            cells.append({"server": kind, "client_session": arm, "per_round": rows[kind][arm],
                          **_load.medians(rows[kind][arm], keys)})
        cells[-1]["own_over_same_per_round"] = [o["tok_s"] / s["tok_s"] if s["tok_s"] else None for o, s in
                                                zip(rows[kind]["own"], rows[kind]["same"])]
    autogroup = AUTOGROUP.read_text().strip() if AUTOGROUP.exists() else None
    _load.write_result(args.out, "client_session", "client_session.py", argv, _load.machine(), engine=_servers.ENGINE,
                       sched_autogroup_enabled=autogroup, streams=args.streams, duration_s=args.duration,
                       cells=cells)
    print(f"\nautogroup scheduling: {autogroup}; {args.streams} streams of 64 tokens\n")
    print("| server | client session | tok/s (spread) | TTFT p50 ms | own / same per round |")
    print("|---|---|---|---|---|")
    for c in cells:
        ratios = " ".join("-" if r is None else f"{r:.2f}" for r in c.get("own_over_same_per_round", ()))
        print(f"| {c['server']} | {c['client_session']} | {_load.with_spread(c, 'tok_s', ',.0f')} "
              f"| {c['ttft_ms_p50']:.1f} | {ratios} |")
    print(f"\nresults: {args.out}")
    return 1 if any(r["errors"] for by_arm in rows.values() for rs in by_arm.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
