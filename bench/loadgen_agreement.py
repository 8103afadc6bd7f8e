"""hetserve's load generator against an independent one (vLLM's `bench serve`) on the same server.

Both drive the same endpoint with the same shape (random prompts of a fixed
token length, fixed output with ignore_eos, a closed loop of N concurrent
streaming completions: no arrival sampling that could differ between tools) one after the other, and the table compares their
TTFT and output throughput. Target: within 5 %.

    hetserve serve &                       # or any OpenAI-compatible server
    python bench/loadgen_agreement.py [--model tiny-llama --concurrency 8 --requests 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from loadtests.cli import main as loadtest


def run_vllm_bench(args, tokenizer: str) -> dict:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    ns = parser.parse_args([
        "--backend", "vllm", "--base-url", args.base_url, "--endpoint", "/v1/completions",
        "--model", args.model, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", str(args.prompt_tokens), "--random-output-len", str(args.output_tokens),
        "--num-prompts", str(args.requests), "--request-rate", "inf", "--max-concurrency", str(args.concurrency),
        "--ignore-eos",
        "--seed", "0", "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el",
    ])
    return main(ns)


def run_hetserve(args, tokenizer: str, out: Path) -> dict:
    code = loadtest([
        "run", "--base-url", args.base_url, "--model", args.model, "--endpoint", "completions",
        "--concurrency", str(args.concurrency), "--requests", str(args.requests),
        "--prompt-tokens", str(args.prompt_tokens), "--output-tokens", str(args.output_tokens),
        "--tokenizer", tokenizer, "--label", "hetserve", "--out", str(out), "--no-progress", "--no-energy",
    ])
    if code != 0:
        raise RuntimeError(f"hetserve loadtest exited {code}")
    return json.loads((out / "hetserve.json").read_text())["summary"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--tokenizer", help="tokenizer directory (default: the locally built tiny Llama)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    args = ap.parse_args()
    if args.tokenizer is None:
        from workers.tiny_model import ensure_tiny_model

        args.tokenizer = str(ensure_tiny_model())

    ours = run_hetserve(args, args.tokenizer, Path(tempfile.mkdtemp(prefix="hetserve-agree-")))
    theirs = run_vllm_bench(args, args.tokenizer)
    rows = [
        ("TTFT mean (ms)", ours["ttft_ms"]["mean"], theirs["mean_ttft_ms"]),
        ("TTFT p50 (ms)", ours["ttft_ms"]["p50"], theirs["median_ttft_ms"]),
        ("TPOT mean (ms)", ours["tpot_ms"]["mean"], theirs["mean_tpot_ms"]),
        ("output tok/s", ours["output_throughput"], theirs["output_throughput"]),
        ("requests/s", ours["request_throughput"], theirs["request_throughput"]),
    ]
    print(f"\n{args.requests} requests, {args.concurrency} concurrent (closed loop), {args.prompt_tokens} in / {args.output_tokens} out, "
          f"model {args.model} at {args.base_url}\n")
    print("| metric | hetserve loadtest | vllm bench serve | ratio |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
