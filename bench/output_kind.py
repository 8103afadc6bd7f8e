"""A whole answer from vLLM: one final output against one delta per step, in process, side by side.

Run: .venv/bin/python bench/output_kind.py [--rounds 8] [--duration 8] [--warmup 60] [--concurrency 16] [--max-tokens 64]

vLLM's own server asks its engine for ``RequestOutputKind.FINAL_ONLY`` when
the client does not stream; hetserve's vLLM adapter asks for ``DELTA`` for
every request (``workers/vllm_engine.py`` says why, docs/benchmarks.md "A
whole answer in one engine output"). This runs vLLM's ``AsyncLLM`` on the tiny model
in this process (the engine settings of ``bench/peer.py``) with a closed loop
of ``--concurrency`` requests of ``--max-tokens`` tokens each, alternating
the two kinds within each round, and reads the tokens/s and this process's
CPU per token: the frontend's work (output processing, detokenization, the
per-request queues), the engine core and its worker being other processes.
Medians over rounds with their spread. Results: ``bench/results/output_kind.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROMPT = {"prompt_token_ids": [1, 2, 3, 4, 5, 6, 7, 8]}


async def _request(engine, sampling) -> int:
    """One request to its end; the number of outputs it took."""
    outputs = 0
    async for _ in engine.generate(PROMPT, sampling, uuid.uuid4().hex):
        outputs += 1
    return outputs


async def closed_loop(engine, kind, concurrency: int, max_tokens: int, duration_s: float) -> dict:
    """``concurrency`` workers sending requests of ``max_tokens`` tokens back to back for ``duration_s``:
    tokens/s, this process's CPU per token, outputs per request."""
    from vllm import SamplingParams

    sampling = SamplingParams(max_tokens=max_tokens, ignore_eos=True, output_kind=kind)
    requests, outputs = 0, 0
    t0, cpu0 = time.monotonic(), time.process_time()

    async def worker() -> None:
        nonlocal requests, outputs
        while time.monotonic() - t0 < duration_s:
            n = await _request(engine, sampling)
            requests, outputs = requests + 1, outputs + n

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, tokens = time.monotonic() - t0, requests * max_tokens
    return {"tok_s": tokens / wall, "frontend_cpu_us_per_token": (time.process_time() - cpu0) / tokens * 1e6,
            "outputs_per_request": outputs / requests, "requests": requests}


async def _run(args) -> dict[str, list[dict]]:
    from vllm import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(
        model=_servers.model_dir(), dtype=_servers.ENGINE["dtype"], max_model_len=_servers.ENGINE["max_model_len"],
        max_num_seqs=_servers.ENGINE["max_num_seqs"]))
    kinds = [RequestOutputKind.DELTA, RequestOutputKind.FINAL_ONLY]
    per: dict[str, list[dict]] = {k.name: [] for k in kinds}
    try:
        for kind in kinds:  # warm-up, not recorded: the engine gets faster over its first minute or so
            await closed_loop(engine, kind, args.concurrency, args.max_tokens, args.warmup / 2)
        for rnd in range(args.rounds):
            for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
                row = await closed_loop(engine, kind, args.concurrency, args.max_tokens, args.duration)
                per[kind.name].append(row)
                print(f"round {rnd + 1} {kind.name:<10} {row['tok_s']:7.0f} tok/s  "
                      f"{row['frontend_cpu_us_per_token']:6.1f} frontend CPU-us/token  "
                      f"{row['outputs_per_request']:5.1f} outputs/request", flush=True)
    finally:
        engine.shutdown()
    return per


def frontend_cells(row: dict, ref: dict) -> str:
    """A table's tok/s and frontend CPU per token (medians with spread), and the CPU as a ratio to ``ref``'s."""
    return (f"{_load.with_spread(row, 'tok_s', ',.0f')} | {_load.with_spread(row, 'frontend_cpu_us_per_token', '.1f')}"
            f" | {row['frontend_cpu_us_per_token'] / ref['frontend_cpu_us_per_token']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per kind and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of unrecorded load first")
    parser.add_argument("--out", type=Path, default=RESULTS / "output_kind.json")
    args = parser.parse_args(argv)
    os.environ.update(_servers.ENGINE_ENV)

    per = asyncio.run(_run(args))
    kinds = []
    for name, rows in per.items():
        kinds.append({"output_kind": name, "per_round": rows,
                      **_load.medians(rows, ("tok_s", "frontend_cpu_us_per_token", "outputs_per_request"))})
    _load.write_result(args.out, "output_kind", "output_kind.py", argv, _load.machine(),
                       engine={**_servers.ENGINE, **_servers.ENGINE_ENV}, concurrency=args.concurrency,
                       max_tokens=args.max_tokens, kinds=kinds)
    ref = kinds[0]
    print("\n| output kind | tok/s (spread) | frontend CPU us/token (spread) | vs DELTA | outputs/request |")
    print("|---|---|---|---|---|")
    for k in kinds:
        print(f"| {k['output_kind']} | {frontend_cells(k, ref)} | {k['outputs_per_request']:.1f} |")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
