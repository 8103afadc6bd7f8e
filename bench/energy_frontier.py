"""The whole tuning grid on the cells the default misses: how much energy can any setting save there?

    python bench/energy_frontier.py                   # 4 cells × 1,737 settings: about 8 min on 2 cores
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
attainment/energy Pareto frontier. Settings that finish no token (no
J/token) count for the floor but not for energy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet.config import load_fleet  # noqa: E402
from routing import DEFAULT_POLICY  # noqa: E402
from sim.run import simulate  # noqa: E402
from sim.scenarios import scenario_trace  # noqa: E402
from sim.tune import Setting, candidates  # noqa: E402
from sim.workload import Workload  # noqa: E402

import _load  # noqa: E402
from policy_eval import (  # noqa: E402
    BASELINES, CAPACITY_ATTAINMENT, ENERGY_SHARE, FLEETS, MODEL, attainment_floor, judge, max_rate,
)

#: The full-load cells the default missed in ``bench/results/policy_eval.json`` (seed 1).
CELLS = (("default", "bursty"), ("default", "long-docs"), ("default", "three-classes"), ("heldout", "bursty"))


@dataclass(frozen=True)
class PoolFigures:
    share: float  # of the requests
    busy: float  # share of replica time stepping
    j_per_token: float  # attributed joules per output token it made


@dataclass(frozen=True)
class SettingRun:
    """One setting simulated on one cell (what a worker process hands back)."""

    setting: str
    j_per_token_attributed: float | None
    slo_attainment: float
    pools: dict[str, PoolFigures]


@dataclass(frozen=True)
class CellSpec:
    fleet: str
    trace: str
    rate: float
    requests: int
    seed: int


_worker: dict = {}  # per worker process: the cell's fleet and workload, built once


def _init(cell: CellSpec) -> None:
    _worker.update(cell=cell, specs=load_fleet(FLEETS[cell.fleet])[0].pools, workload=Workload.from_records(
        scenario_trace(cell.trace, model=MODEL, n=cell.requests, rate=cell.rate, seed=cell.seed)))


def _run(setting: Setting) -> SettingRun:
    r = simulate(_worker["specs"], _worker["workload"], setting.routing, seed=_worker["cell"].seed, learn=True)
    pools = {p.name: PoolFigures(round(p.share, 4), round(p.busy_share, 4),
                                 round(p.energy_attributed_j / p.output_tokens, 4))
             for p in r.pools if p.output_tokens}
    return SettingRun(setting.label, r.j_per_token_attributed, r.slo_attainment, pools)


def frontier(rows: list[dict]) -> list[dict]:
    """Settings no other beats on both attainment and J/token, by attainment, best first."""
    best: list[dict] = []
    for t in sorted((t for t in rows if t["j_per_token_attributed"] is not None),
                    key=lambda t: (-t["slo_attainment"], t["j_per_token_attributed"])):
        if not best or t["j_per_token_attributed"] < best[-1]["j_per_token_attributed"]:
            best.append(t)
    return best


def by_setting(runs: list[SettingRun]) -> dict[str, dict]:
    """Runs as rows keyed by setting, in the shape ``policy_eval.judge`` reads (the baselines among them)."""
    return {r.setting: dataclasses.asdict(r) for r in runs}


def summarise(runs: list[SettingRun]) -> dict:
    """A cell's figures from its runs (the baselines and the default among them)."""
    by = by_setting(runs)
    rows = list(by.values())
    least_load = by["least-load"]["j_per_token_attributed"]
    floor = attainment_floor(by)
    for t in rows:
        verdict = judge(by, t["j_per_token_attributed"], t["slo_attainment"])
        t["x_least_load"], t["meets_floor"] = verdict.x_least_load, verdict.attainment_ok
    saving = [t for t in rows if t["x_least_load"] is not None]
    meeting = [t for t in saving if t["meets_floor"]]
    return {"floor": floor, "least_load_j_per_token": least_load, "default": by[DEFAULT_POLICY],
            "baselines": {b: by[b] for b in BASELINES}, "settings": len(rows),
            "meeting_floor": sum(t["meets_floor"] for t in rows),
            "best_meeting_floor": min(meeting, key=lambda t: t["x_least_load"], default=None),
            "least_energy": min(saving, key=lambda t: t["x_least_load"]),
            "frontier": frontier(rows)}


def run_settings(cell: CellSpec, settings: list[Setting], workers: int) -> list[SettingRun]:
    """Every setting simulated on ``cell``, in ``workers`` processes."""
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init, initargs=(cell,)) as pool:
        return pool.map(_run, settings, chunksize=8)


def run_cell(cell: CellSpec, settings: list[Setting], workers: int) -> dict:
    return {**dataclasses.asdict(cell), "load": "full", **summarise(run_settings(cell, settings, workers))}


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


def full_load_rates(path: Path | None, requests: int, seed: int) -> dict[tuple[str, str], float]:
    """(fleet, trace) -> full-load rate from a ``policy_eval`` JSON of the same requests and seed."""
    if path is None or not path.exists():
        return {}
    doc = json.loads(path.read_text())
    if doc.get("requests") != requests or doc.get("seed") != seed:
        return {}
    return {(c["fleet"], c["trace"]): c["rate"] for c in doc["cells"] if c["load"] == "full"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=[f"{f}:{t}" for f, t in CELLS],
                    help="fleet:trace, at full load (default: the cells the default missed)")
    ap.add_argument("--rates", type=Path, default=ROOT / "bench" / "results" / "policy_eval.json",
                    help="take each cell's full-load rate from this policy_eval JSON (searched when absent)")
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N settings (presets first)")
    ap.add_argument("--quick", action="store_true", help="smoke run: one cell, 200 requests, 40 settings")
    ap.add_argument("--out", type=Path, help="JSON (default: bench/results/energy_frontier.json; none with --quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.cells, args.requests, args.limit, args.rates = ["default:bursty"], 200, 40, None
    elif args.out is None:
        args.out = ROOT / "bench" / "results" / "energy_frontier.json"
    known = full_load_rates(args.rates, args.requests, args.seed)
    settings = candidates(None, None, seed=0)[:args.limit]
    started = time.perf_counter()
    cells = []
    for spec in args.cells:
        fleet, trace = spec.split(":")
        rate = known.get((fleet, trace)) or max_rate(load_fleet(FLEETS[fleet])[0].pools, trace, args.requests,
                                                      args.seed, CAPACITY_ATTAINMENT)
        cells.append(run_cell(CellSpec(fleet, trace, rate, args.requests, args.seed), settings, args.workers))
        print(f"{spec}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    table = markdown(cells)
    print(table)
    if args.out:
        machine = {**_load.machine(engines=False), "workers": args.workers}
        _load.write_result(args.out, "energy_frontier", "energy_frontier.py", argv, machine,
                           target_share=ENERGY_SHARE, seed=args.seed, requests=args.requests,
                           wall_s=time.perf_counter() - started, table=table, cells=cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
