"""vLLM's CPU engine alone: CPU per output token of its worker, its EngineCore and its API server.

Run: .venv/bin/python bench/engine_spin.py [--rounds 2] [--duration 6]

vLLM's own OpenAI server (the peer comparison's reference, ``bench/_servers.py``
settings) streams 64-token completions at 1 and 16 streams; each cell reads
the CPU time of the server's processes before and after, split by process
title: ``worker`` (``VLLM::Worker``, the model), ``engine_core``
(``VLLM::EngineCore``, the scheduler) and ``api_server``. On CPU vLLM always
runs the model in a worker process apart from the EngineCore, and the two
hand steps over through shared-memory queues whose readers busy-wait for a
second after each read; ``cores_busy`` is the server's CPU seconds per
second of wall time, what is left of the machine for anything else beside
it. Medians over rounds with their spread; JSON: ``bench/results/engine_spin.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402

PARTS = ("worker", "engine_core", "api_server")


def _part(cmdline: list[str], name: str) -> str:
    """Which of :data:`PARTS` a process is, from its (vLLM-set) process title."""
    title = " ".join(cmdline) or name
    if "VLLM::Worker" in title:
        return "worker"
    return "engine_core" if "VLLM::EngineCore" in title else "api_server"


def cpu_by_part(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the server's process tree, summed per :data:`PARTS`."""
    spent = _servers.cpu_by_role(root_pid, _part)
    return {part: spent.get(part, 0.0) for part in PARTS}


def run_cell(server, streams: int, duration_s: float) -> dict:
    before = cpu_by_part(server.proc.pid)
    samples, wall = asyncio.run(_load.closed_loop(server.url, concurrency=streams, duration_s=duration_s,
                                                  max_tokens=64, stream=True))
    after = cpu_by_part(server.proc.pid)
    row = _load.summarize(samples, wall, True)
    tokens = sum(s.output_tokens for s in samples if s.ok)
    if not tokens:
        raise SystemExit(f"{streams} streams: no request produced a token ({row['errors']} errors)")
    spent = {part: after[part] - before[part] for part in PARTS}
    return {"streams": streams, "tok_s": row["tok_s"], "errors": row["errors"],
            **{f"{part}_cpu_ms_per_tok": 1e3 * spent[part] / tokens for part in PARTS},
            "cores_busy": sum(spent.values()) / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument("--streams", default="1,16")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_spin.json")
    args = parser.parse_args(argv)
    streams = [int(s) for s in args.streams.split(",")]
    keys = ("tok_s", *(f"{part}_cpu_ms_per_tok" for part in PARTS), "cores_busy")
    rows: dict[int, list[dict]] = {n: [] for n in streams}
    with tempfile.TemporaryDirectory(prefix="engine-spin-") as logs:
        server = _servers.start_server("vllm", log_dir=Path(logs))
        try:
            for rnd in range(args.rounds):
                for n in streams:
                    row = run_cell(server, n, args.duration)
                    rows[n].append(row)
                    print(f"round {rnd + 1} streams {n:>2}: {row['tok_s']:7.0f} tok/s  CPU ms/token "
                          + "  ".join(f"{p} {row[f'{p}_cpu_ms_per_tok']:.3f}" for p in PARTS)
                          + f"  cores busy {row['cores_busy']:.2f}  errors {row['errors']}", flush=True)
        finally:
            server.stop()
    cells = [{"streams": n, "per_round": rows[n], **_load.medians(rows[n], keys)} for n in streams]
    _load.write_result(args.out, "engine_spin", "engine_spin.py", argv, _load.machine(), engine=_servers.ENGINE,
                       duration_s=args.duration, cells=cells)
    print("\n| streams | tok/s (spread) | worker CPU ms/token | EngineCore CPU ms/token | API server CPU ms/token"
          " | cores busy |")
    print("|---|---|---|---|---|---|")
    for c in cells:
        print(f"| {c['streams']} | {_load.with_spread(c, 'tok_s', ',.0f')} | {c['worker_cpu_ms_per_tok']:.2f}"
              f" | {c['engine_core_cpu_ms_per_tok']:.2f} | {c['api_server_cpu_ms_per_tok']:.2f}"
              f" | {c['cores_busy']:.2f} |")
    print(f"\nresults: {args.out}")
    return 1 if any(r["errors"] for rs in rows.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
