"""``hetserve plan``: plan a fleet for a trace, check it by simulation, write YAML and a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from fleet.config import FleetConfigError, load_fleet
from fleet.trace import TraceError
from plan.milp import PlanInfeasible
from routing.errors import ProfileError
from routing.profile import ProfileBook
from plan.planner import build_problem, fleet_of, plan_for
from plan.report import render
from plan.verify import Verified, verify
from sim.workload import Workload
from workers.hardware import get_hardware

GPU = "gpu"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hetserve plan", description=__doc__)
    p.add_argument("--trace", required=True, help="JSONL trace (fleet/trace.py)")
    p.add_argument("--objective", choices=["cost", "energy"], default="cost")
    p.add_argument("--slo-ttft-ms", type=float, help="TTFT target for requests that set none")
    p.add_argument("--slo-tpot-ms", type=float, help="TPOT target for requests that set none")
    p.add_argument("--hardware", default="h100,l40s,rngd,atom", help="comma-separated catalog keys")
    p.add_argument("--max-replicas", type=int, default=64, help="per hardware type")
    p.add_argument("--fleet", help="base fleet: model, served names, routing (default: embedded)")
    p.add_argument("--window-s", type=float, default=60.0, help="peak window")
    p.add_argument("--target", type=float, default=0.95, help="SLO attainment the simulation must reach")
    p.add_argument("--profiles", help="directory of measured profiles for the simulation check "
                   "(default: the base fleet's 'profiles', else modelled)")
    p.add_argument("--out", default="fleet.yaml")
    p.add_argument("--report", help="HTML report (default: OUT with .html)")
    return p


def run_plan(args: argparse.Namespace) -> tuple[Verified, list[Verified]]:
    base, base_dir = load_fleet(args.fleet)
    directory = args.profiles or (base.profiles and str((base_dir or Path.cwd()) / base.profiles))
    profiles = ProfileBook.load_dir(directory) if directory and Path(directory).is_dir() else None
    w = Workload.read(args.trace).with_default_slo(args.slo_ttft_ms, args.slo_tpot_ms)
    hardware = [h.strip() for h in args.hardware.split(",") if h.strip()]
    problem = build_problem(w, base, hardware, args.window_s)

    def checked(allowed: list[str], label: str) -> Verified:
        return verify(plan_for(problem, allowed, args.objective, label, max_replicas=args.max_replicas),
                      problem, base, w, target=args.target, profiles=profiles)

    chosen = checked(hardware, "plan")
    alternatives = []
    singles = []
    for h in hardware:
        try:
            singles.append(checked([h], f"only {h}"))
        except PlanInfeasible:
            continue
    meeting = [v for v in singles if v.met]
    if meeting:
        alternatives.append(min(meeting, key=lambda v: v.plan.cost_per_hour))
    gpus = [h for h in hardware if get_hardware(h).kind == GPU]
    if gpus and gpus != hardware:
        try:
            alternatives.append(checked(gpus, "GPU-only"))
        except PlanInfeasible:
            pass
    fleet = fleet_of(chosen.plan, problem, base)
    out = Path(args.out)
    out.write_text(yaml.safe_dump(fleet.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    Path(args.report or out.with_suffix(".html")).write_text(render(chosen, alternatives, args.objective, args.target))
    return chosen, alternatives


def plan_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        chosen, alternatives = run_plan(args)
    except (FleetConfigError, TraceError, PlanInfeasible, ProfileError, OSError) as exc:
        print(f"hetserve plan: {exc}", file=sys.stderr)
        return 2
    for v in [chosen, *alternatives]:
        print(json.dumps({"plan": v.plan.label, "replicas": v.plan.replicas, "usd_per_hour": round(v.plan.cost_per_hour, 2),
                          "slo_attainment": round(v.result.slo_attainment, 4), "met": v.met, "added": v.added}))
    return 0 if chosen.met else 1
