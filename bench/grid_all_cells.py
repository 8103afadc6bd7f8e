"""The whole tuning grid on all 18 evaluation cells: does any one setting meet more cells than the default?

    python bench/grid_all_cells.py                 # 18 cells × 1,737 settings: about 52 min on 2 cores
    python bench/grid_all_cells.py --quick         # smoke run: 2 cells, 12 settings

``bench/energy_frontier.py`` asks, per cell the default misses, whether any
setting meets the energy target there; a setting tuned to one cell gave up
others. This asks the question a default must answer: over every cell of
``bench/policy_eval.py`` (3 traces × 3 loads × 2 fleets, each at the rate,
seed and requests of that evaluation, with online learning), how many cells
does each setting ``hetserve tune`` knows (``sim.tune.candidates``) meet
both targets in: SLO attainment at least the better baseline's less one
point, and attributed J/token at most 0.75 × ``least-load``'s, the
baselines being the ``least-load`` and ``latency`` presets run beside it.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from routing import DEFAULT_POLICY  # noqa: E402
from sim.tune import candidates  # noqa: E402

import _load  # noqa: E402
from energy_frontier import CellSpec, SettingRun, by_setting, run_settings  # noqa: E402
from policy_eval import BASELINES, Verdict, judge  # noqa: E402


def verdicts(runs: list[SettingRun]) -> list[Verdict]:
    """Each run of one cell judged against the baselines run beside it (``least-load``, ``latency``)."""
    by = by_setting(runs)
    return [judge(by, r.j_per_token_attributed, r.slo_attainment) for r in runs]


def rank(settings: list[str], per_cell: list[list[Verdict]]) -> list[dict]:
    """Settings by cells met (then attainment cells, then the mean energy ratio), best first."""
    rows = []
    for i, name in enumerate(settings):
        cells = [c[i] for c in per_cell]
        ratios = [v.x_least_load for v in cells if v.x_least_load is not None]
        rows.append({"setting": name, "met": sum(v.met for v in cells),
                     "attainment_ok": sum(v.attainment_ok for v in cells),
                     "mean_x_least_load": round(sum(ratios) / len(ratios), 4) if ratios else None,
                     "cells": [[None if v.x_least_load is None else round(v.x_least_load, 4), v.attainment_ok]
                               for v in cells]})
    return sorted(rows, key=lambda r: (-r["met"], -r["attainment_ok"], r["mean_x_least_load"] or float("inf")))


def markdown(ranked: list[dict], default: dict, labels: list[str], top: int) -> str:
    shown = ranked[:top] + ([default] if default not in ranked[:top] else [])
    head = "| setting | cells met | attainment cells | " + " | ".join(labels) + " |"
    rows = [head, "|" + "---|" * (3 + len(labels))]
    for r in shown:
        cells = " | ".join("-" if x is None else f"{x:.2f}{'' if ok else '!'}" for x, ok in r["cells"])
        name = f"**{r['setting']}** (default)" if r is default else r["setting"]
        rows.append(f"| {name} | {r['met']} | {r['attainment_ok']} | {cells} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, default=ROOT / "bench" / "results" / "policy_eval.json",
                    help="the policy_eval JSON whose cells (fleet, trace, rate, seed, requests) are run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N settings (presets first; at least the baselines)")
    ap.add_argument("--top", type=int, default=12, help="settings shown in the table")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 cells, 12 settings")
    ap.add_argument("--out", type=Path, help="JSON (default: bench/results/grid_all_cells.json; none with --quick)")
    args = ap.parse_args(argv)
    doc = json.loads(args.eval.read_text())
    cells, requests = doc["cells"], doc["requests"]
    if args.quick:
        cells, args.limit = cells[:2], 12
    elif args.out is None:
        args.out = ROOT / "bench" / "results" / "grid_all_cells.json"
    settings = candidates(None, None, seed=0)[:args.limit]
    if not {*BASELINES, DEFAULT_POLICY} <= {s.label for s in settings}:
        ap.error(f"--limit {args.limit} leaves out a baseline or the default (the presets come first)")
    started = time.perf_counter()
    per_cell, names = [], [s.label for s in settings]
    for cell in cells:
        runs = run_settings(CellSpec(cell["fleet"], cell["trace"], cell["rate"], requests, doc["seed"]),
                            settings, args.workers)
        per_cell.append(verdicts(runs))
        print(f"{cell['fleet']} {cell['trace']} {cell['load']}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    ranked = rank(names, per_cell)
    default = next(r for r in ranked if r["setting"] == DEFAULT_POLICY)
    labels = [f"{c['fleet'][0]}{c['trace'][0]} {c['load']}" for c in cells]
    histogram = dict(sorted(collections.Counter(r["met"] for r in ranked).items(), reverse=True))
    table = markdown(ranked, default, labels, args.top)
    summary = (f"{len(ranked)} settings × {len(cells)} cells: the most cells any setting meets is {ranked[0]['met']} "
               f"({sum(r['met'] == ranked[0]['met'] for r in ranked)} settings); {DEFAULT_POLICY} meets "
               f"{default['met']}; settings by cells met: {histogram}")
    print(table + "\n\n" + summary)
    if args.out:
        _load.write_result(args.out, "grid_all_cells", "grid_all_cells.py", argv,
                           {**_load.machine(engines=False), "workers": args.workers},
                           eval=str(args.eval.relative_to(ROOT)) if args.eval.is_relative_to(ROOT) else str(args.eval),
                           seed=doc["seed"], requests=requests, wall_s=time.perf_counter() - started,
                           labels=labels, histogram=histogram, summary=summary, table=table,
                           top=ranked[:50], default=default)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
