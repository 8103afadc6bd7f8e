"""Streaming peer comparison: hetserve against vLLM's own server and ray.serve.llm, same engine.

Run: .venv/bin/python bench/peer.py [--quick] [--servers vllm,rayllm,hetserve] [--relay-sweep]

One after another on this machine, each server loads the same tiny Llama
(``workers.tiny_model.ensure_tiny_model``) with the same engine settings
(``bench/_servers.py``: bfloat16, max_model_len 2048, max_num_seqs 64,
VLLM_CPU_KVCACHE_SPACE=1) and gets the same closed-loop client
(``bench/_load.py``) at 1, 4, 16 and 64 concurrent streams of 64 and 256
output tokens (``ignore_eos``), plus non-streaming requests. One table:
output tok/s, TTFT p50/p99, inter-token latency p50/p99 (gaps between
deliveries), requests/s, each as a ratio to vLLM's own server, and the CPU
seconds per 1,000 output tokens of the serving processes (everything but
vLLM's EngineCore and Worker) and of the gateway alone (Ray's proxy and the
ingress replica). Results go to ``bench/results/peer*.json``.

``--relay-sweep`` runs hetserve with relay windows 0, 10, 20, 50 ms and with
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (TO=1) at 20 and 50 ms instead, vLLM's
server as the reference; ``--relay-sweep --focused`` repeats only the 20/50 ms
± TO=1 contenders in reverse order (to tell drift on a shared machine from a
real difference).

``--quick`` uses tiny sizes (the smoke test, tests/integration/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REFERENCE = "vllm"


@dataclass(frozen=True)
class Cell:
    concurrency: int
    max_tokens: int
    stream: bool
    requests: int

    @property
    def name(self) -> str:
        return f"{'stream' if self.stream else 'unary'} c={self.concurrency} out={self.max_tokens}"


@dataclass
class Variant:
    label: str
    kind: str
    env: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def full_grid() -> list[Cell]:
    cells = []
    for out in (64, 256):
        for c in (1, 4, 16, 64):
            cells.append(Cell(c, out, True, max(8, c * (3 if c < 64 else 2))))
    for c in (1, 16, 64):
        cells.append(Cell(c, 64, False, max(8, c * (3 if c < 64 else 2))))
    return cells


def quick_grid() -> list[Cell]:
    return [Cell(1, 16, True, 3), Cell(4, 16, True, 8), Cell(4, 16, False, 8)]


def sweep_grid(quick: bool) -> list[Cell]:
    if quick:
        return [Cell(1, 16, True, 3), Cell(4, 16, True, 8)]
    return [Cell(1, 64, True, 10), Cell(16, 64, True, 64), Cell(64, 64, True, 192)]


def peer_variants(names: list[str]) -> list[Variant]:
    known = {
        "vllm": Variant("vllm", "vllm"),
        "rayllm": Variant("ray.serve.llm", "rayllm"),
        "hetserve": Variant("hetserve", "hetserve"),
        "hetserve-to": Variant("hetserve TO=1", "hetserve", env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]


def sweep_variants(focused: bool = False) -> list[Variant]:
    """All windows and TO=1; ``focused``: only the contenders (20 and 50 ms, each ± TO=1), in reverse order."""
    if focused:
        return [Variant("vllm", "vllm")] + [v for v in reversed(sweep_variants()) if "w=20ms" in v.label or "w=50ms" in v.label]
    out = [Variant("vllm", "vllm")]
    for w in (0.0, 0.01, 0.02, 0.05):
        out.append(Variant(f"hetserve w={w * 1000:g}ms", "hetserve", options={"relay_window_s": w}))
    for w in (0.02, 0.05):
        out.append(Variant(f"hetserve w={w * 1000:g}ms TO=1", "hetserve",
                           env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, options={"relay_window_s": w}))
    return out


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}


def measure(variant: Variant, cells: list[Cell], log_dir: Path) -> dict:
    print(f"\n== {variant.label}: starting", flush=True)
    server = _servers.start_server(variant.kind, label=variant.label.replace(" ", "_").replace("=", ""),
                                   log_dir=log_dir, env=variant.env, **variant.options)
    print(f"   answered after {server.started_s:.1f} s at {server.url}", flush=True)
    out = {"label": variant.label, "kind": variant.kind, "env": variant.env, "options": variant.options,
           "started_s": round(server.started_s, 2), "cells": []}
    try:
        # Warm-up, not recorded: first requests pay for lazy imports and caches.
        asyncio.run(_load.closed_loop(server.url, concurrency=4, requests=8, max_tokens=16, stream=True, first_index=10**6))
        index = 0
        for cell in cells:
            cpu0 = server.cpu()
            samples, wall = asyncio.run(_load.closed_loop(
                server.url, concurrency=cell.concurrency, requests=cell.requests,
                max_tokens=cell.max_tokens, stream=cell.stream, first_index=index))
            cpu = _cpu_delta(cpu0, server.cpu())
            index += cell.requests
            row = {"cell": cell.name, "concurrency": cell.concurrency, "max_tokens": cell.max_tokens,
                   "stream": cell.stream, **_load.summarize(samples, wall, cell.stream)}
            tokens = max(row["output_tokens"], 1)
            serving = sum(v for k, v in cpu.items() if k != "engine")
            gateway = cpu.get("proxy", 0.0) + cpu.get("ingress", 0.0)
            row["cpu_s"] = {k: round(v, 3) for k, v in sorted(cpu.items())}
            row["serving_cpu_s_per_1k_tok"] = serving * 1000 / tokens
            row["gateway_cpu_s_per_1k_tok"] = gateway * 1000 / tokens if variant.kind != "vllm" else None
            row["tokens_exact"] = all(s.output_tokens == cell.max_tokens for s in samples if s.ok)
            out["cells"].append(row)
            print(f"   {cell.name:<22} {row['tok_s']:>8.0f} tok/s  ttft p50 {_f(row['ttft_ms_p50'])} ms"
                  f"  itl p99 {_f(row['itl_ms_p99'])} ms  errors {row['errors']}", flush=True)
    finally:
        server.stop()
    return out


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _ratio(v, ref) -> str:
    if v is None or not ref:
        return ""
    return f" ({v / ref:.2f}x)"


COLUMNS = [  # (header, key, digits)
    ("tok/s", "tok_s", 0),
    ("TTFT p50 ms", "ttft_ms_p50", 1),
    ("TTFT p99 ms", "ttft_ms_p99", 1),
    ("ITL p50 ms", "itl_ms_p50", 1),
    ("ITL p99 ms", "itl_ms_p99", 1),
    ("req/s", "req_s", 1),
]


def table(results: list[dict], reference: str = REFERENCE) -> str:
    """A Markdown table: one row per (cell, server), each figure with its ratio to the reference server."""
    ref = next((r for r in results if r["kind"] == reference), None)
    ref_cells = {c["cell"]: c for c in ref["cells"]} if ref else {}
    headers = ["cell", "server"] + [h for h, _, _ in COLUMNS] + ["serving CPU s/1k tok", "gateway CPU s/1k tok", "err"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    cells = list(dict.fromkeys(c["cell"] for r in results for c in r["cells"]))
    for name in cells:
        for r in results:
            row = next((c for c in r["cells"] if c["cell"] == name), None)
            if row is None:
                continue
            base = ref_cells.get(name, {})
            figs = []
            for _, key, digits in COLUMNS:
                v = row.get(key)
                figs.append(_f(v, digits) + ("" if r is ref else _ratio(v, base.get(key))))
            figs += [_f(row["serving_cpu_s_per_1k_tok"], 3), _f(row["gateway_cpu_s_per_1k_tok"], 3), str(row["errors"])]
            lines.append("| " + " | ".join([name, r["label"]] + figs) + " |")
    return "\n".join(lines)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ray
    import vllm

    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "ray": ray.__version__, "vllm": vllm.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--servers", default="vllm,rayllm,hetserve",
                        help="comma-separated: vllm, rayllm, hetserve, hetserve-to (TO=1)")
    parser.add_argument("--relay-sweep", action="store_true", help="hetserve relay windows and TO=1 instead")
    parser.add_argument("--focused", action="store_true", help="with --relay-sweep: only 20/50 ms ± TO=1, reversed")
    parser.add_argument("--out", type=Path, help="JSON results (default: bench/results/peer[-sweep][-quick].json)")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a temporary directory)")
    args = parser.parse_args(argv)

    if args.relay_sweep:
        variants, cells = sweep_variants(args.focused), sweep_grid(args.quick)
    else:
        variants = peer_variants([s.strip() for s in args.servers.split(",") if s.strip()])
        cells = quick_grid() if args.quick else full_grid()
    name = "peer" + ("-sweep" if args.relay_sweep else "") + ("-focused" if args.relay_sweep and args.focused else "")
    name += "-quick" if args.quick else ""
    out_path = args.out or RESULTS / f"{name}.json"
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="hetserve-bench-"))
    _servers.model_dir()  # build the tiny model once, outside any timing

    results = []
    t0 = time.monotonic()
    for v in variants:
        results.append(measure(v, cells, log_dir))
    doc = {
        "benchmark": name,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "engine": {**_servers.ENGINE, **_servers.ENGINE_ENV},
        "command": "bench/peer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "elapsed_s": round(time.monotonic() - t0, 1),
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(results))
    print(f"\nresults: {out_path}  (server logs: {log_dir})")
    bad = [r["label"] for r in results if any(c["errors"] or not c["tok_s"] for c in r["cells"])]
    if bad:
        print(f"errors or no throughput from: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
