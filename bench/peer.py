"""Peer comparison: hetserve against vLLM's own server and ray.serve.llm, same engine, one run.

Run: .venv/bin/python bench/peer.py [--quick] [--servers vllm,rayllm,rayllm-fast,hetserve]
                                    [--rounds 3] [--duration 5] [--baseline REF]

Every server loads the same tiny Llama (``workers.tiny_model.ensure_tiny_model``)
with the same engine settings (``bench/_servers.py``: bfloat16, max_model_len
2048, max_num_seqs 64, VLLM_CPU_KVCACHE_SPACE=1):

- ``vllm``: vLLM's own OpenAI server (the reference of every ratio);
- ``rayllm``: ``ray.serve.llm.build_openai_app`` with its defaults;
- ``rayllm-fast``: the same with its fastest documented configuration,
  ``RAY_SERVE_ENABLE_HA_PROXY=1`` (HAProxy ingress, direct ingress) and
  ``RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1``;
- ``hetserve``: ``hetserve serve`` on ``bench/fleets/cpu-vllm.yaml``.

All servers are started first and stay up; then each round runs every cell
on every server, the servers' order rotated from round to round, so a noisy
neighbour on a shared machine hits all of them alike. While one server runs
a cell the others are paused (SIGSTOP to their process trees): an idle Ray
cluster still spends about a sixth of a core (controller, GCS, raylet,
proxies), which would otherwise load whichever server is measured
(``--no-pause`` keeps them running). A resumed server is measured once it
answered five completions in a row. A cell is a closed loop
of ``--duration`` seconds (requests in flight at the end finish and count).
The table gives, per cell and server, the median over rounds and its spread
(min-max), each as a ratio to vLLM's own server, and checks the targets of
issue 12 (``TARGETS``). CPU seconds per 1,000 output tokens come from each
server's process tree by role (``_servers.cpu_by_role``); the gateway's share
is Ray's proxy (or HAProxy) and the ingress replica.

``--baseline REF`` adds hetserve as of git commit ``REF`` (a temporary
worktree, ``_servers.source_tree``): a change measured against the code
before it, in the same rounds.

``--quick``: one round of two short cells (the smoke test).
Results: ``bench/results/peer[-quick].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shlex
import statistics
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
FAST_RAYLLM_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "1"}


@dataclass(frozen=True)
class Cell:
    concurrency: int
    max_tokens: int
    stream: bool

    @property
    def name(self) -> str:
        return f"{'stream' if self.stream else 'unary'} c={self.concurrency} out={self.max_tokens}"


@dataclass
class Variant:
    label: str
    kind: str
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # another commit's source tree (--baseline)
    cpus: str | None = None  # the CPUs its processes start on (taskset), engine threads aside
    options: dict = field(default_factory=dict)  # hetserve's: _servers.start_server's options (relay_window_s)


def _serving_core_layout() -> tuple[dict[str, str], str]:
    """vLLM's own CPU layout made strict: its model worker's threads bound to every core but the
    last (what its automatic binding does), every other process of the server kept on the last core
    (by default they run where the scheduler puts them, the worker's cores included)."""
    last = (os.cpu_count() or 2) - 1
    return {"VLLM_CPU_OMP_THREADS_BIND": "0" if last <= 1 else f"0-{last - 1}"}, str(last)


_SERVING_ENV, _SERVING_CPUS = _serving_core_layout()


VARIANTS = {
    "vllm": Variant("vllm", "vllm"),
    "rayllm": Variant("ray.serve.llm", "rayllm"),
    "rayllm-fast": Variant("ray.serve.llm fast", "rayllm", FAST_RAYLLM_ENV),
    "hetserve": Variant("hetserve", "hetserve"),
    # Each with its serving processes kept off the engine's cores (_serving_core_layout).
    "vllm-serving-core": Variant("vllm serving-core", "vllm", _SERVING_ENV, cpus=_SERVING_CPUS),
    "hetserve-serving-core": Variant("hetserve serving-core", "hetserve", _SERVING_ENV, cpus=_SERVING_CPUS),
    # hetserve behind Ray Serve's default Python proxy instead of HAProxy (deploy/ingress.py), to re-measure.
    "hetserve-serve-proxy": Variant("hetserve serve-proxy", "hetserve", {"RAY_SERVE_ENABLE_HA_PROXY": "0"}),
    # hetserve relaying every engine delta as its own line, however many streams share the replica.
    "hetserve-unmerged": Variant("hetserve unmerged", "hetserve", options={"relay_window_s": 0.0}),
    # hetserve with Serve's controller reconciling every 0.5 s instead of 0.1 s (its idle wakeups, to measure).
    "hetserve-control-0.5": Variant("hetserve control 0.5 s", "hetserve", {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"}),
    # hetserve's Ray workers (replicas, the engines they spawn, HAProxy) at Ray's niceness 15, not hetserve's 0.
    "hetserve-nice15": Variant("hetserve nice 15", "hetserve", {"RAY_worker_niceness": "15"}),
}

#: The cells the targets are stated on.
GRID = [Cell(1, 1, False), Cell(16, 64, False), Cell(1, 64, True), Cell(4, 64, True), Cell(16, 64, True)]
QUICK_GRID = [Cell(1, 16, True), Cell(4, 16, False)]


def variants(names: list[str]) -> list[Variant]:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; known: {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


def run_cell(server, variant: Variant, cell: Cell, duration_s: float, first_index: int) -> dict:
    cpu0 = server.cpu()
    samples, wall = asyncio.run(_load.closed_loop(
        server.url, concurrency=cell.concurrency, duration_s=duration_s, max_tokens=cell.max_tokens,
        stream=cell.stream, first_index=first_index))
    cpu = _servers.cpu_delta(cpu0, server.cpu())
    row = _load.summarize(samples, wall, cell.stream)
    tokens = max(row["output_tokens"], 1)
    row["serving_cpu_s_per_1k_tok"] = sum(v for k, v in cpu.items() if k != "engine") * 1000 / tokens
    row["gateway_cpu_s_per_1k_tok"] = (_servers.gateway_cpu(cpu) * 1000 / tokens if variant.kind != "vllm"
                                       else None)
    row["cpu_s_per_1k_tok_by_role"] = {role: v * 1000 / tokens for role, v in sorted(cpu.items())}
    row["tokens_exact"] = all(s.output_tokens == cell.max_tokens for s in samples if s.ok)
    return row


#: Per-round figures a cell keeps; the summary is their median and spread.
FIGURES = ("tok_s", "req_s", "ttft_ms_p50", "ttft_ms_p99", "itl_ms_p50", "itl_ms_p99", "e2e_ms_p50",
           "serving_cpu_s_per_1k_tok", "gateway_cpu_s_per_1k_tok")


def summarize_rounds(rounds: list[dict]) -> dict:
    out = {"rounds": len(rounds), "errors": sum(r["errors"] for r in rounds),
           "first_error": next((r["first_error"] for r in rounds if r["first_error"]), None),
           "tokens_exact": all(r["tokens_exact"] for r in rounds),
           "requests": sum(r["requests"] for r in rounds)}
    roles = sorted({role for r in rounds for role in r["cpu_s_per_1k_tok_by_role"]})
    by_role = {role: statistics.median(r["cpu_s_per_1k_tok_by_role"].get(role, 0.0) for r in rounds) for role in roles}
    return {**out, **_load.medians(rounds, FIGURES), "cpu_s_per_1k_tok_by_role": by_role}


#: (cell, figure, how, bound, against): the targets of issue 12, against vLLM's own server
#: unless ``against`` names another server kind's best label.
TARGETS = [
    ("unary c=1 out=1", "e2e_ms_p50", "adds at most ms", 2.0, "vllm"),
    ("unary c=16 out=64", "tok_s", "ratio at least", 0.8, "vllm"),
    ("stream c=1 out=64", "tok_s", "ratio at least", 0.9, "vllm"),
    ("stream c=4 out=64", "tok_s", "ratio at least", 0.9, "vllm"),
    ("stream c=16 out=64", "tok_s", "ratio at least", 0.9, "vllm"),
    ("stream c=16 out=64", "tok_s", "ratio at least", 1.5, "rayllm"),
    ("stream c=1 out=64", "itl_ms_p99", "ratio at most", 2.0, "vllm"),
    ("stream c=4 out=64", "itl_ms_p99", "ratio at most", 2.0, "vllm"),
    ("stream c=16 out=64", "itl_ms_p99", "ratio at most", 2.0, "vllm"),
    ("stream c=1 out=64", "ttft_ms_p50", "adds at most ms", 3.0, "vllm"),
]


def check_targets(results: list[dict], subject: str = "hetserve") -> list[dict]:
    by_label = {r["label"]: {c["cell"]: c for c in r["cells"]} for r in results}
    kinds = {r["label"]: r["kind"] for r in results}
    mine = by_label.get(subject)
    out = []
    if mine is None:
        return out
    for cell, key, how, bound, against in TARGETS:
        peers = [cells[cell][key] for label, cells in by_label.items()
                 if kinds[label] == against and cell in cells and cells[cell].get(key) is not None]
        if cell not in mine or mine[cell].get(key) is None or not peers:
            continue
        ref = max(peers) if key == "tok_s" else min(peers)  # the peer's best configuration
        value = mine[cell][key]
        if how == "adds at most ms":
            measured, ok = value - ref, value - ref <= bound
        elif how == "ratio at least":
            measured, ok = value / ref, value / ref >= bound
        else:
            measured, ok = value / ref, value / ref <= bound
        out.append({"cell": cell, "figure": key, "target": f"{how} {bound:g} vs {against}",
                    "measured": round(measured, 3), "met": bool(ok)})
    return out


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _ratio(v, ref) -> str:
    return "" if v is None or not ref else f" ({v / ref:.2f}x)"


COLUMNS = [  # (header, key, digits)
    ("tok/s", "tok_s", 0),
    ("e2e p50 ms", "e2e_ms_p50", 1),
    ("TTFT p50 ms", "ttft_ms_p50", 1),
    ("ITL p50 ms", "itl_ms_p50", 1),
    ("ITL p99 ms", "itl_ms_p99", 1),
]


def table(results: list[dict], reference: str = REFERENCE) -> str:
    """Markdown: one row per (cell, server); medians over rounds, ratio to the reference, tok/s spread."""
    ref = next((r for r in results if r["kind"] == reference), None)
    ref_cells = {c["cell"]: c for c in ref["cells"]} if ref else {}
    headers = ["cell", "server"] + [h for h, _, _ in COLUMNS] + ["tok/s spread", "gateway CPU s/1k tok", "err"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    cells = list(dict.fromkeys(c["cell"] for r in results for c in r["cells"]))
    for name in cells:
        for r in results:
            row = next((c for c in r["cells"] if c["cell"] == name), None)
            if row is None:
                continue
            base = ref_cells.get(name, {})
            figs = [_f(row.get(key), d) + ("" if r is ref else _ratio(row.get(key), base.get(key))) for _, key, d in COLUMNS]
            lo, hi = row["tok_s_spread"] or (None, None)
            figs += [f"{_f(lo, 0)}-{_f(hi, 0)}", _f(row["gateway_cpu_s_per_1k_tok"], 3), str(row["errors"])]
            lines.append("| " + " | ".join([name, r["label"]] + figs) + " |")
    return "\n".join(lines)


def cpu_table(results: list[dict]) -> str:
    """Markdown: CPU seconds per 1,000 output tokens by process role (``_servers.role_of``), medians over
    rounds: where each server spends its CPU, the engine included."""
    roles = sorted({role for r in results for c in r["cells"] for role in c["cpu_s_per_1k_tok_by_role"]})
    lines = ["| cell | server | " + " | ".join(roles) + " |", "|" + "---|" * (len(roles) + 2)]
    cells = list(dict.fromkeys(c["cell"] for r in results for c in r["cells"]))
    for name in cells:
        for r in results:
            row = next((c for c in r["cells"] if c["cell"] == name), None)
            if row is not None:
                figs = [_f(row["cpu_s_per_1k_tok_by_role"].get(role), 3) for role in roles]
                lines.append("| " + " | ".join([name, r["label"]] + figs) + " |")
    return "\n".join(lines)


def targets_table(checks: list[dict]) -> str:
    lines = ["| cell | figure | target | hetserve | met |", "|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['cell']} | {c['figure']} | {c['target']} | {c['measured']:g} | {'yes' if c['met'] else 'NO'} |")
    return "\n".join(lines)


def _without_log_dir(args: list[str]) -> list[str]:
    """The command as recorded: ``--log-dir`` names a path of the machine that ran it."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--log-dir":
            skip = True
        elif not a.startswith("--log-dir="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of two short cells (smoke test)")
    parser.add_argument("--servers", default="vllm,rayllm,rayllm-fast,hetserve", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell and round")
    parser.add_argument("--cells", help="only the cells whose names contain one of these (comma-separated)")
    parser.add_argument("--out", type=Path, help="JSON results (default: bench/results/peer[-quick].json)")
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a temporary directory)")
    parser.add_argument("--baseline", metavar="REF", help="also run hetserve as of git commit REF (before a change)")
    parser.add_argument("--no-pause", action="store_true",
                        help="keep the servers not being measured running (their idle CPU loads the one measured)")
    args = parser.parse_args(argv)

    chosen = variants([s.strip() for s in args.servers.split(",") if s.strip()])
    with contextlib.ExitStack() as trees:
        if args.baseline:
            chosen.append(Variant(f"hetserve {args.baseline}", "hetserve",
                                  root=trees.enter_context(_servers.source_tree(args.baseline))))
        return _run(args, chosen, argv)


def _run(args, chosen: list[Variant], argv: list[str] | None) -> int:
    cells, rounds, duration = (QUICK_GRID, 1, 1.5) if args.quick else (GRID, args.rounds, args.duration)
    if args.cells:
        cells = [c for c in cells if any(p.strip() in c.name for p in args.cells.split(","))]
    out_path = args.out or RESULTS / f"peer{'-quick' if args.quick else ''}.json"
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="hetserve-bench-"))
    _servers.model_dir()  # build the tiny model once, outside any timing

    t0 = time.monotonic()
    servers, started, failed = {}, {}, {}
    try:
        for v in chosen:
            print(f"== {v.label}: starting", flush=True)
            try:
                servers[v.label] = _servers.start_server(v.kind, label=v.label.replace(" ", "_").replace(".", "_"),
                                                         log_dir=log_dir, env=v.env, root=v.root, cpus=v.cpus,
                                                         **v.options)
            except RuntimeError as exc:  # a configuration that does not run here is a finding, not a crash
                failed[v.label] = str(exc).strip().splitlines()[-1][:300]  # the log tail's last line: the error
                print(f"   did not start: {failed[v.label]}", flush=True)
                continue
            started[v.label] = servers[v.label].started_s
            print(f"   answered after {started[v.label]:.1f} s at {servers[v.label].url}", flush=True)
            # Warm-up, not recorded: first requests pay for lazy imports and caches.
            asyncio.run(_load.closed_loop(servers[v.label].url, concurrency=4, requests=8, max_tokens=16,
                                          stream=True, first_index=10**6))
            if not args.no_pause:
                servers[v.label].pause()
        live = [v for v in chosen if v.label in servers]
        per: dict[tuple[str, str], list[dict]] = {}
        index = 0
        for rnd in range(rounds):
            order = live[rnd % len(live):] + live[: rnd % len(live)] if live else []
            for cell in cells:
                for v in order:
                    if not args.no_pause:
                        servers[v.label].resume()
                    row = run_cell(servers[v.label], v, cell, duration, index)
                    if not args.no_pause:
                        servers[v.label].pause()
                    index += row["requests"]
                    per.setdefault((v.label, cell.name), []).append(row)
                    print(f"   round {rnd + 1} {cell.name:<20} {v.label:<20} {row['tok_s']:>7.0f} tok/s"
                          f"  e2e p50 {_f(row['e2e_ms_p50'])}  ttft p50 {_f(row['ttft_ms_p50'])}"
                          f"  itl p99 {_f(row['itl_ms_p99'])}  err {row['errors']}", flush=True)
    finally:
        for s in servers.values():
            s.stop()

    results = []
    for v in chosen:
        if v.label not in servers:
            continue
        rows = []
        for cell in cells:
            summary = summarize_rounds(per[(v.label, cell.name)])
            rows.append({"cell": cell.name, "concurrency": cell.concurrency, "max_tokens": cell.max_tokens,
                         "stream": cell.stream, **summary, "per_round": per[(v.label, cell.name)]})
        results.append({"label": v.label, "kind": v.kind, "env": v.env, "baseline": v.root is not None,
                        "started_s": round(started[v.label], 2),
                        "cells": rows})
    checks = check_targets(results)
    doc = {
        "benchmark": "peer" + ("-quick" if args.quick else ""),
        "date": datetime.date.today().isoformat(),
        "machine": _load.machine(),
        "engine": {**_servers.ENGINE, **_servers.ENGINE_ENV},
        "command": "bench/peer.py " + shlex.join(_without_log_dir(argv if argv is not None else sys.argv[1:])),
        "rounds": rounds,
        "duration_s": duration,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "did_not_start": failed,
        "targets": checks,
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(table(results))
    print("\nCPU s per 1,000 output tokens, by process role:\n")
    print(cpu_table(results))
    if checks:
        print()
        print(targets_table(checks))
    print(f"\nresults: {out_path}  (server logs: {log_dir})")
    bad = [r["label"] for r in results if any(c["errors"] or not c["tok_s"] for c in r["cells"])]
    if bad:
        print(f"errors or no throughput from: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
