"""vLLM's stat logging on and off, in process, side by side: what it costs the engine's frontend per token.

Run: .venv/bin/python bench/engine_stats.py [--rounds 4] [--duration 8] [--warmup 40] [--concurrency 1,16] [--max-tokens 64]

``AsyncEngineArgs`` logs stats unless told not to: a ``LoggingStatLogger``
and a ``PrometheusStatLogger`` fed every engine step, in the process that
also detokenizes and hands outputs to the requests. hetserve's fleets used to
turn it on (and the vLLM adapter added a logger of its own for running and
waiting counts); the adapter now runs vLLM with ``disable_log_stats=True``
and counts its requests itself (``workers/vllm_engine.py``). This runs two
``AsyncLLM`` engines on the tiny model in this process (the engine settings
of ``bench/peer.py``), one with stat logging and one without, and drives each
in turn with a closed loop of requests at each concurrency, alternating the
order every round. It reads tokens/s and this process's CPU per token (the
idle engine's frontend costs next to nothing). Medians over rounds with their
spread. Results: ``bench/results/engine_stats.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402
from output_kind import closed_loop, frontend_cells  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SETTINGS = {"stat logging on": False, "stat logging off": True}  # label: disable_log_stats


async def _run(args) -> list[dict]:
    from vllm import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    engines = {label: AsyncLLM.from_engine_args(AsyncEngineArgs(
        model=_servers.model_dir(), disable_log_stats=off, **_servers.ENGINE)) for label, off in SETTINGS.items()}
    cells = [(label, c) for c in args.concurrency for label in SETTINGS]
    rows: dict[tuple[str, int], list[dict]] = {cell: [] for cell in cells}
    kind = RequestOutputKind.DELTA  # as hetserve's adapter asks
    try:
        for engine in engines.values():  # warm-up, not recorded
            await closed_loop(engine, kind, max(args.concurrency), args.max_tokens, args.warmup / len(engines))
        for rnd in range(args.rounds):
            for label, c in cells if rnd % 2 == 0 else cells[::-1]:
                row = await closed_loop(engines[label], kind, c, args.max_tokens, args.duration)
                rows[(label, c)].append(row)
                print(f"round {rnd + 1} {label:<16} c={c:<3} {row['tok_s']:7.0f} tok/s  "
                      f"{row['frontend_cpu_us_per_token']:6.1f} frontend CPU-us/token", flush=True)
    finally:
        for engine in engines.values():
            engine.shutdown()
    return [{"setting": label, "disable_log_stats": SETTINGS[label], "concurrency": c, "per_round": rows[(label, c)],
             **_load.medians(rows[(label, c)], ("tok_s", "frontend_cpu_us_per_token"))} for label, c in cells]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per cell and round")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds of unrecorded load first, in all")
    parser.add_argument("--out", type=Path, default=RESULTS / "engine_stats.json")
    args = parser.parse_args(argv)
    os.environ.update(_servers.ENGINE_ENV)

    cells = asyncio.run(_run(args))
    _load.write_result(args.out, "engine_stats", "engine_stats.py", argv, _load.machine(),
                       engine={**_servers.ENGINE, **_servers.ENGINE_ENV}, max_tokens=args.max_tokens, cells=cells)
    print("\n| concurrency | setting | tok/s (spread) | frontend CPU us/token (spread) | CPU vs on |")
    print("|---|---|---|---|---|")
    for c in args.concurrency:
        on = next(x for x in cells if x["concurrency"] == c and not x["disable_log_stats"])
        for x in (x for x in cells if x["concurrency"] == c):
            print(f"| {c} | {x['setting']} | {frontend_cells(x, on)} |")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
