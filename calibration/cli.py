"""``hetserve calibrate``: measure each pool's efficiency grid through a running
gateway and write ``<out>/<pool>.json`` (a calibrated profile) and its heat map.

What a sweep sends and what one cell measures: ``calibration.sweep``;
``docs/calibration.md`` for operators.
"""


from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httpx

from calibration.client import API_KEY_ENV, DEFAULT_BASE_URL, GatewayClient, RequestFailed
from calibration.report import cell_rows, summary, write_outputs
from calibration.sweep import (
    DEFAULT_MAX_CELL_S,
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_REPEATS,
    DEFAULT_TIME_BUDGET_S,
    ERROR,
    model_predictor,
    sweep_pool,
)
from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS

DEFAULT_OUT = "profiles"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hetserve calibrate",
        description="Measure each pool's efficiency grid (batch × sequence length) through a running "
                    "gateway; write <out>/<pool>.json (calibrated profile) and <out>/<pool>.png (heat map).",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pool", action="append", metavar="NAME", help="pool to calibrate (repeatable)")
    which.add_argument("--all", action="store_true", help="every pool of the fleet, one after another")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"the gateway (default {DEFAULT_BASE_URL})")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"bearer key, when the gateway has api_keys (default: ${API_KEY_ENV})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}/)")
    p.add_argument("--model", help="served model name to calibrate (default: each pool's first)")
    p.add_argument("--batch-sizes", type=_int_list, metavar="N,N,...",
                   help="concurrent sequences per cell (default: 1, 2, 4, ... up to the pool's capacity, "
                        "at most 256)")
    p.add_argument("--prompt-lengths", type=_int_list, metavar="N,N,...",
                   help="prompt tokens per cell (default: one per sequence bucket 128 ... 32768, bucket "
                        "minus output tokens; past the pool's max_seq_len the first is probed once and, "
                        "if refused, it and the longer ones are marked infeasible)")
    p.add_argument("--output-tokens", type=_positive(int), default=DEFAULT_OUTPUT_TOKENS,
                   help=f"completion tokens per sequence, fixed (default {DEFAULT_OUTPUT_TOKENS})")
    p.add_argument("--repeats", type=_positive(int), default=DEFAULT_REPEATS,
                   help=f"runs per cell, averaged (default {DEFAULT_REPEATS})")
    p.add_argument("--time-budget-s", type=_positive(float), default=DEFAULT_TIME_BUDGET_S,
                   help=f"per pool: no cell starts that would overrun it (default {DEFAULT_TIME_BUDGET_S:g})")
    p.add_argument("--max-cell-s", type=float, default=DEFAULT_MAX_CELL_S,
                   help="skip cells whose estimated run time exceeds this, and the larger ones beyond them "
                        f"(default {DEFAULT_MAX_CELL_S:g}; 0 = no limit)")
    p.add_argument("--metric", default="j_per_token",
                   choices=("j_per_token", "throughput_tok_s", "ttft_ms", "tpot_ms", "watts", "cost_per_mtok"),
                   help="what the heat map colours (default j_per_token)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt token ids")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="print every cell, not only the summary")
    return p


async def run_calibration(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None = None,
                          stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr

    def log(text: str) -> None:
        print(text, file=stderr, flush=True)

    client = GatewayClient(args.base_url, args.api_key, transport=transport)
    status = 0
    try:
        try:
            fleet = await client.fleet()
        except (httpx.HTTPError, RequestFailed, KeyError, ValueError) as exc:
            log(f"calibrate: cannot read the fleet at {args.base_url}/v1/fleet: {exc}")
            return 1
        names = list(fleet) if args.all else list(dict.fromkeys(args.pool))
        unknown = [n for n in names if n not in fleet]
        if unknown:
            log(f"calibrate: no pool named {', '.join(unknown)}; the fleet has {', '.join(fleet)}")
            return 2
        try:
            batches, prompts = _checked_grids(args, log)
        except ValueError as exc:
            log(f"calibrate: {exc}")
            return 2
        for name in names:
            pool = fleet[name]
            if not pool.healthy:
                log(f"calibrate: {name}: unhealthy, skipped")
                status = 1
                continue
            if args.model and args.model not in pool.models:
                log(f"calibrate: {name}: does not serve {args.model!r} (serves {', '.join(pool.models)}), skipped")
                status = 1
                continue
            try:
                sweep = await sweep_pool(
                    client, pool, model=args.model, batch_sizes=batches, prompt_lengths=prompts,
                    output_tokens=args.output_tokens, repeats=args.repeats, time_budget_s=args.time_budget_s,
                    max_cell_s=args.max_cell_s, seed=args.seed, progress=not args.no_progress,
                    predictor=model_predictor(pool, args.model), log=log,
                )
            except (RequestFailed, httpx.HTTPError, KeyError) as exc:
                log(f"calibrate: {name}: failed: {type(exc).__name__}: {exc}")
                status = 1
                continue
            json_path, png_path = write_outputs(sweep, args.out, args.metric)
            print(summary(sweep), file=stdout)
            if args.verbose:
                print(cell_rows(sweep), file=stdout)
            print(f"wrote {json_path} and {png_path}\n", file=stdout, flush=True)
            if any(c.status == ERROR for c in sweep.cells):
                status = 1
    finally:
        await client.aclose()
    return status


def _checked_grids(args: argparse.Namespace, log) -> tuple[list[int] | None, list[int] | None]:
    """Explicit grids, less the values no profile cell can hold."""
    batches, prompts = args.batch_sizes, args.prompt_lengths
    if batches is not None:
        kept = [b for b in batches if b <= DEFAULT_BATCH_BUCKETS[-1]]
        if len(kept) < len(batches):
            log(f"calibrate: batch sizes above {DEFAULT_BATCH_BUCKETS[-1]} (the last batch bucket) dropped")
        if not kept:
            raise ValueError("no batch size left to measure")
        batches = kept
    if prompts is not None:
        limit = DEFAULT_SEQ_BUCKETS[-1] - args.output_tokens
        kept = [p for p in prompts if p <= limit]
        if len(kept) < len(prompts):
            log(f"calibrate: prompt lengths above {limit} (last sequence bucket {DEFAULT_SEQ_BUCKETS[-1]} "
                f"minus {args.output_tokens} output tokens) dropped")
        if not kept:
            raise ValueError("no prompt length left to measure")
        prompts = kept
    return batches, prompts


def calibrate_main(argv: list[str] | None = None) -> int:
    """``hetserve calibrate ...``: returns the exit status (0 ok, 1 a pool failed, 2 usage)."""
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # usage errors and --help: argparse printed why
        return int(exc.code or 0)
    if args.max_cell_s < 0:
        print("calibrate: --max-cell-s must be >= 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_calibration(args))
    except KeyboardInterrupt:
        print("calibrate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(calibrate_main())
