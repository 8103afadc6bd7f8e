"""Planner against its alternatives on three generated traces (chat, document, mixed).

Run: ``python bench/plan_comparison.py`` → ``bench/results/plan_comparison.json``.
Each plan is checked by simulation (sim.simulate, the base fleet's routing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from fleet.trace import TraceRecord, write_trace
from plan.cli import build_parser, run_plan
from sim.workload import Workload

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TRACES = {"chat-heavy": ("chat", 80.0), "document-heavy": ("long-doc", 8.0), "mixed": ("mixed", 30.0)}


def _records(w: Workload) -> list[TraceRecord]:
    return [TraceRecord(t=float(t), model=MODEL, prompt_tokens=int(p), output_tokens=int(o))
            for t, p, o in zip(w.t, w.prompt, w.output)]


def traces(n: int) -> dict[str, list[TraceRecord]]:
    """loadtests.workloads' length profiles, Poisson arrivals."""
    return {name: _records(Workload.synthetic(MODEL, n, rate, lengths=kind, seed=7))
            for name, (kind, rate) in TRACES.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1200)
    ap.add_argument("--out", default="bench/results/plan_comparison.json")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, recs in traces(a.requests).items():
            path = Path(tmp) / f"{name}.jsonl"
            write_trace(path, recs)
            for objective in ("cost", "energy"):
                args = build_parser().parse_args(["--trace", str(path), "--objective", objective,
                                                  "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100",
                                                  "--out", str(Path(tmp) / "fleet.yaml")])
                chosen, alts = run_plan(args)
                results[f"{name}/{objective}"] = [{
                    "plan": v.plan.label, "replicas": v.plan.replicas, "added_by_sim": v.added,
                    "usd_per_hour": round(v.plan.cost_per_hour, 3),
                    "j_per_token_attributed": v.result.j_per_token_attributed,
                    "j_per_token_total": v.result.j_per_token_total,
                    "slo_attainment": v.result.slo_attainment, "met": v.met,
                } for v in [chosen, *alts]]
    Path(a.out).write_text(json.dumps(results, indent=2, default=float))
    for k, rows in results.items():
        for r in rows:
            print(k, r["plan"], r["replicas"], r["usd_per_hour"], np.round(r["j_per_token_attributed"] or 0, 3),
                  np.round(r["j_per_token_total"] or 0, 3), round(r["slo_attainment"], 3))


if __name__ == "__main__":
    main()
