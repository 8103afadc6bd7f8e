"""``hetserve simulate`` and ``hetserve tune``.

Exit codes: 0 done, 1 a run could not be set up (bad fleet, trace or
routing file), 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from fleet.config import FleetConfigError, load_fleet
from fleet.trace import TraceError
from routing.config import load_routing_config
from routing.errors import ProfileError, RoutingConfigError
from routing.presets import COMPARED_POLICIES, POLICIES
from routing.profile import ProfileBook
from sim.oracle import oracle_bound
from sim.report import html_report, table
from sim.run import simulate
from sim.tune import OBJECTIVES, tune
from sim.workload import Workload

_SETUP_ERRORS = (FleetConfigError, TraceError, RoutingConfigError, ProfileError, OSError, ValueError)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", help="fleet YAML (default: the embedded default fleet)")
    parser.add_argument("--trace", required=True, help="JSONL trace (fleet.trace format)")
    parser.add_argument("--profiles", help="directory of measured profiles (default: the fleet's "
                        "'profiles', else modelled from the hardware model)")
    parser.add_argument("--slo-ttft-ms", type=float, help="target for requests that set none")
    parser.add_argument("--slo-tpot-ms", type=float, help="target for requests that set none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learn", action="store_true", help="learn profiles online, as the gateway does")


def _load(args) -> tuple[list, Workload, ProfileBook | None]:
    fleet, base = load_fleet(args.fleet)
    directory = args.profiles or (fleet.profiles and str((base or Path.cwd()) / fleet.profiles))
    profiles = ProfileBook.load_dir(directory) if directory and Path(directory).is_dir() else None
    workload = Workload.read(args.trace).with_default_slo(args.slo_ttft_ms, args.slo_tpot_ms)
    if not len(workload):
        raise ValueError(f"{args.trace}: the trace is empty")
    return fleet.pools, workload, profiles


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code argparse chose (help, usage error)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2


def _slo(args) -> dict:
    slo = {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms}
    return {k: v for k, v in slo.items() if v is not None}


def simulate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hetserve simulate",
        description="Replay a trace through simulated pools under routing policies; "
        "compare energy, cost, latency and SLOs against the oracle bound.")
    _common(parser)
    parser.add_argument("--policy", action="append", choices=POLICIES,
                        help=f"repeatable (default: {', '.join(COMPARED_POLICIES)})")
    parser.add_argument("--routing", action="append", default=[], metavar="YAML",
                        help="a routing config file to simulate too (e.g. from 'hetserve tune')")
    parser.add_argument("--dispatch-ms", type=float, default=0.0,
                        help="request-path latency between routing and the engine (proxy, gateway, Ray), "
                        "counted in TTFT; measure it with bench/sim_fidelity.py (default 0)")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--out", help="folder for results.json and report.html")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        specs, workload, profiles = _load(args)
        runs = [(p, {"policy": p, **({"slo": _slo(args)} if _slo(args) else {})})
                for p in (args.policy or ([] if args.routing else COMPARED_POLICIES))]
        runs += [(Path(f).stem, load_routing_config(f)) for f in args.routing]
        results = [simulate(specs, workload, cfg, profiles=profiles, seed=args.seed, learn=args.learn,
                            label=label, dispatch_s=args.dispatch_ms / 1e3) for label, cfg in runs]
        oracle = None if args.no_oracle else oracle_bound(specs, workload)
        capped = None if args.no_oracle else oracle_bound(specs, workload, concurrency=True)
    except _SETUP_ERRORS as e:
        print(f"hetserve simulate: {e}", file=sys.stderr)
        return 1
    results = [dataclasses.replace(r, oracle_ratio=oracle and oracle.ratio(r.j_per_token_attributed),
                                   oracle_ratio_capped=capped and capped.ratio(r.j_per_token_attributed))
               for r in results]
    print(table(results, oracle, capped))
    wall = sum(r.wall_s for r in results)
    print(f"{len(workload)} requests × {len(results)} runs in {wall:.2f} s of simulation "
          f"({len(workload) * len(results) / wall:,.0f} requests/s)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"trace": args.trace, "fleet": args.fleet or "(embedded default)",
               "oracle": dataclasses.asdict(oracle) if oracle else None,
               "oracle_capped": dataclasses.asdict(capped) if capped else None,
               "runs": [r.to_dict() for r in results]}
        (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
        notes = [f"trace {args.trace}: {len(workload)} requests over {workload.span_s:.0f} s",
                 "pools are simulated (modelled from the hardware catalog unless measured profiles drive them)"]
        (out / "report.html").write_text(html_report(results, oracle, "hetserve simulation", notes, capped))
        print(f"wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0


def tune_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hetserve tune",
        description="Search routing parameters by simulation; write the best as a routing YAML.")
    _common(parser)
    parser.add_argument("--objective", choices=OBJECTIVES, default="energy")
    parser.add_argument("--min-attainment", type=float, default=0.9,
                        help="SLO attainment a candidate needs for energy/cost (default 0.9)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=60.0, help="stop starting trials after this")
    parser.add_argument("--out", default="routing.tuned.yaml", help="routing YAML to write")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        specs, workload, profiles = _load(args)
        best, trials = tune(specs, workload, args.objective, slo_ttft_ms=args.slo_ttft_ms,
                            slo_tpot_ms=args.slo_tpot_ms, min_attainment=args.min_attainment,
                            trials=args.trials, budget_s=args.budget_s, seed=args.seed, profiles=profiles,
                            learn=args.learn)
    except _SETUP_ERRORS as e:
        print(f"hetserve tune: {e}", file=sys.stderr)
        return 1
    results = [dataclasses.replace(t.result, label=f"#{i} {t.label}") for i, t in enumerate(trials)]
    print(table(results[:10]))
    r = trials[0].result
    header = (f"# hetserve tune --objective {args.objective}: best of {len(trials)} simulated candidates on "
              f"{Path(args.trace).name}\n# {r.j_per_token_attributed or 0:.3f} J/tok attributed, "
              f"{r.usd_per_mtok or 0:.3f} $/Mtok, SLO attainment {100 * r.slo_attainment:.1f} %, "
              f"goodput {r.goodput_rps:.2f}/s{', profiles learned online' if args.learn else ''}\n")
    Path(args.out).write_text(header + yaml.safe_dump(best, sort_keys=False))
    print(f"wrote {args.out}")
    return 0
