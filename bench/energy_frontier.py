"""The whole tuning grid on the cells the default misses: how much energy can any setting save there?

    python bench/energy_frontier.py                   # 4 cells × 1,737 settings: about 15 min on 2 cores
    python bench/energy_frontier.py --quick           # smoke run: 40 settings, one cell, 200 requests

``bench/policy_eval.py`` finds that the default (``slo-energy``) misses the
energy target (attributed J/token at most 0.75 × ``least-load``'s) at full
load in a few cells while meeting the attainment floor (the better of
``least-load`` and ``latency`` minus one point). Is that the default's
parameters, or the cell? This runs every candidate ``hetserve tune`` knows
(``sim.tune.candidates``: every preset, then the full grid over the default
policy's parameters: predicted-SLO margin and ``protect_in_flight``, the
headroom margin or none, the packing margin, the average-efficiency and
load scorers' weights, the spill-over saturation) on each cell, with the
cell's trace, rate, seed and online learning exactly as the evaluation
runs them, and reports per cell the least J/token among settings that meet
the floor, the least among all settings at any attainment, and the
attainment/energy Pareto frontier.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet.config import load_fleet  # noqa: E402
from routing import DEFAULT_POLICY  # noqa: E402
from sim.run import simulate  # noqa: E402
from sim.scenarios import scenario_trace  # noqa: E402
from sim.tune import candidates  # noqa: E402
from sim.workload import Workload  # noqa: E402

from policy_eval import ATTAINMENT_SLACK, BASELINES, ENERGY_SHARE, FLEETS, MODEL, max_rate  # noqa: E402

#: The full-load cells the default missed in ``bench/results/policy_eval.json`` (seed 1).
CELLS = (("default", "bursty"), ("default", "long-docs"), ("default", "three-classes"), ("heldout", "bursty"))

_cell: dict = {}  # per worker process: the cell being run (fleet specs and workload)


def describe(routing: dict) -> str:
    """A setting in one line: the preset's name, or the grid's parameters."""
    if "plugins" not in routing:
        return routing["policy"]
    params = {pl["type"]: pl.get("parameters", {}) for pl in routing["plugins"]}
    weights = {r["pluginRef"]: r.get("weight", 1) for pr in routing["schedulingProfiles"]
               for r in pr["plugins"] if r["pluginRef"] in ("efficiency", "cost", "load")}
    slo = params.get("predicted-slo", {})
    head = params["headroom"].get("margin", 0.1) if "headroom" in params else None
    packed = params.get("packed-energy", params.get("packed-cost", {}))
    return (f"margin {slo.get('margin')} protect {slo.get('protect_in_flight')} "
            f"headroom {'none' if head is None else head} packing {packed.get('margin')} "
            f"efficiency {weights.get('efficiency', weights.get('cost', 0))} load {weights.get('load', 0)} "
            f"saturation {routing['spillover']['saturation']}")


def _init(fleet: str, scenario: str, rate: float, requests: int, seed: int) -> None:
    _cell.update(specs=load_fleet(FLEETS[fleet])[0].pools, seed=seed, workload=Workload.from_records(
        scenario_trace(scenario, model=MODEL, n=requests, rate=rate, seed=seed)))


def _trial(routing: dict) -> dict:
    r = simulate(_cell["specs"], _cell["workload"], routing, seed=_cell["seed"], learn=True)
    return {"setting": describe(routing), "j_per_token_attributed": r.j_per_token_attributed,
            "slo_attainment": r.slo_attainment, "rejected": sum(r.rejected.values()),
            "pools": {p.name: {"share": round(p.share, 4), "busy": round(p.busy_share, 4),
                               "j_per_token": round(p.energy_attributed_j / p.output_tokens, 4)}
                      for p in r.pools if p.output_tokens}}


def frontier(trials: list[dict]) -> list[dict]:
    """Settings no other beats on both attainment and J/token, by attainment, best first."""
    best: list[dict] = []
    for t in sorted(trials, key=lambda t: (-t["slo_attainment"], t["j_per_token_attributed"])):
        if not best or t["j_per_token_attributed"] < best[-1]["j_per_token_attributed"]:
            best.append(t)
    return best


def run_cell(fleet: str, scenario: str, rate: float | None, settings: list[dict], *,
             requests: int, seed: int, workers: int) -> dict:
    specs = load_fleet(FLEETS[fleet])[0].pools
    rate = rate or max_rate(specs, scenario, requests, seed, 0.9)
    args = (fleet, scenario, rate, requests, seed)
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init, initargs=args) as pool:
        trials = pool.map(_trial, settings, chunksize=8)
    by = {t["setting"]: t for t in trials}
    least_load = by["least-load"]["j_per_token_attributed"]
    floor = max(by[b]["slo_attainment"] for b in BASELINES) - ATTAINMENT_SLACK
    for t in trials:
        t["x_least_load"] = t["j_per_token_attributed"] / least_load
        t["meets_floor"] = t["slo_attainment"] >= floor and not t["rejected"]
    meeting = [t for t in trials if t["meets_floor"]]
    best, least, front = min(meeting, key=lambda t: t["x_least_load"], default=None), \
        min(trials, key=lambda t: t["x_least_load"]), frontier(trials)
    notable = {id(t) for t in (best, least, by[DEFAULT_POLICY], *(by[b] for b in BASELINES), *front)}
    summary = [{k: v for k, v in t.items() if k != "pools"} for t in trials if id(t) not in notable]
    return {"fleet": fleet, "trace": scenario, "load": "full", "rate": rate, "requests": requests,
            "floor": floor, "least_load_j_per_token": least_load, "default": by[DEFAULT_POLICY],
            "settings": len(trials), "meeting_floor": len(meeting),
            "best_meeting_floor": best, "least_energy": least, "frontier": front,
            "baselines": {b: by[b] for b in BASELINES},
            "trials": summary}  # every other setting, without its per-pool figures


def markdown(cells: list[dict]) -> str:
    def point(t: dict | None) -> str:
        return "-" if t is None else f"{t['x_least_load']:.3f}x at {100 * t['slo_attainment']:.1f} %"

    rows = ["| cell | floor | default | least J/token meeting the floor (settings meeting it) | its setting "
            "| least J/token at any attainment |", "|---|---|---|---|---|---|"]
    for c in cells:
        best = c["best_meeting_floor"]
        rows.append(f"| {c['fleet']} {c['trace']} full | {100 * c['floor']:.1f} % | {point(c['default'])} "
                    f"| {point(best)} ({c['meeting_floor']}/{c['settings']}) | {best['setting'] if best else '-'} "
                    f"| {point(c['least_energy'])} ({c['least_energy']['setting']}) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=[f"{f}:{t}" for f, t in CELLS],
                    help="fleet:trace, at full load (default: the cells the default missed)")
    ap.add_argument("--rates", default="bench/results/policy_eval.json",
                    help="take each cell's full-load rate from this policy_eval JSON (searched when absent)")
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N settings (presets first)")
    ap.add_argument("--quick", action="store_true", help="smoke run: one cell, 200 requests, 40 settings")
    ap.add_argument("--out", help="JSON (default: bench/results/energy_frontier.json; none with --quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.cells, args.requests, args.limit, args.rates = ["default:bursty"], 200, 40, None
    elif args.out is None:
        args.out = "bench/results/energy_frontier.json"
    known = {}
    if args.rates and Path(args.rates).exists():
        doc = json.loads(Path(args.rates).read_text())
        if doc.get("requests") == args.requests and doc.get("seed") == args.seed:
            known = {(c["fleet"], c["trace"]): c["rate"] for c in doc["cells"] if c["load"] == "full"}
    settings = candidates(None, None, seed=0)[:args.limit]
    started = time.perf_counter()
    cells = []
    for spec in args.cells:
        fleet, scenario = spec.split(":")
        cells.append(run_cell(fleet, scenario, known.get((fleet, scenario)), settings,
                              requests=args.requests, seed=args.seed, workers=args.workers))
        print(f"{spec}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    table = markdown(cells)
    print(table)
    if args.out:
        out = {"benchmark": "energy_frontier", "date": datetime.now(timezone.utc).date().isoformat(),
               "command": "python bench/energy_frontier.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "target_share": ENERGY_SHARE, "seed": args.seed, "requests": args.requests,
               "wall_s": time.perf_counter() - started, "table": table, "cells": cells}
        Path(args.out).write_text(json.dumps(out, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
