"""Every routing policy on generated traces × loads × fleets, in the simulator.

    python bench/policy_eval.py                       # about 3 min on one core
    python bench/policy_eval.py --quick               # a few seconds: smoke run
    python bench/policy_eval.py --policy least-load latency bench/routing/slo-energy-no-margin.yaml

A ``--policy`` is a preset's name or a routing YAML file (``docs/routing.md``),
labelled by its file name without ``.yaml``.

Traces come from ``sim.scenarios`` (bursty; long documents past ATOM's
compiled length; two or three SLO classes with per-request targets). For
every fleet × trace the most the fleet can serve is found by search: the
highest mean rate at which the better of ``least-load`` and ``latency``
still attains ``--capacity-attainment`` of its requests' targets with no
rejection. Each trace then runs at ¼, ½ and all of that rate under every
policy, with the gateway's online profile learning on (as live), beside the
oracle bound (``sim.oracle``) and its concurrency-capped variant.

Per cell the checks are the issue's targets for the candidate policy
(``--candidate``, default: the routing default): SLO attainment at least the
better of ``least-load`` and ``latency`` minus one point, and attributed
J/token at most 0.75 × ``least-load``'s; the oracle ratio is reported (aim
≤ 1.3). Writes JSON (``--out``) and prints a Markdown table and one line per
cell saying met or missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.config import load_fleet  # noqa: E402
from routing.config import RoutingConfig  # noqa: E402
from routing.presets import COMPARED_POLICIES  # noqa: E402
from sim.oracle import oracle_bound  # noqa: E402
from sim.run import simulate  # noqa: E402
from sim.scenarios import SCENARIOS, scenario_trace  # noqa: E402
from sim.workload import Workload  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ROOT = Path(__file__).resolve().parents[1]
FLEETS = {"default": None, "heldout": str(ROOT / "bench" / "fleets" / "heldout.yaml")}
LOADS = {"1/4": 0.25, "1/2": 0.5, "full": 1.0}
BASELINES = ("least-load", "latency")
# The issue's per-cell targets: attainment within this much of the best baseline, attributed J/token
# at most this share of least-load's; and the oracle ratio it aims at.
ATTAINMENT_SLACK = 0.01
# Full load: the highest rate at which the better baseline attains this share of its requests' targets.
CAPACITY_ATTAINMENT = 0.9
ENERGY_SHARE = 0.75
ORACLE_AIM = 1.3


def routing_of(policy: str) -> tuple[str, dict]:
    """The label and routing document of a ``--policy``: a preset's name, or a routing YAML file."""
    if policy.endswith((".yaml", ".yml")):
        path = Path(policy)
        return path.stem, yaml.safe_load(path.read_text()) or {}
    return policy, {"policy": policy}


def run(specs, workload: Workload, routing: dict, *, seed: int, label: str) -> dict:
    """One simulation with online learning (as the gateway), summarised."""
    r = simulate(specs, workload, routing, seed=seed, learn=True, label=label)
    return {
        "policy": label,
        "completed": r.completed,
        "rejected": r.rejected,
        "j_per_token_attributed": r.j_per_token_attributed,
        "j_per_token_total": r.j_per_token_total,
        "slo_attainment": r.slo_attainment,
        "slo_attainment_by_class": r.slo_attainment_by_class,
        "ttft_ms": dataclasses.asdict(r.ttft_ms),
        "tpot_ms": dataclasses.asdict(r.tpot_ms),
        "goodput_rps": r.goodput_rps,
        "share": {p.name: round(p.share, 4) for p in r.pools},
        "wall_s": r.wall_s,
    }


def _baseline_attainment(specs, workload: Workload, seed: int) -> tuple[float, int]:
    runs = [run(specs, workload, {"policy": p}, seed=seed, label=p) for p in BASELINES]
    best = max(runs, key=lambda x: x["slo_attainment"])
    return best["slo_attainment"], sum(best["rejected"].values())


def max_rate(specs, scenario: str, n: int, seed: int, attainment: float, iterations: int = 7) -> float:
    """Highest mean rate (req/s) at which the better baseline keeps ``attainment``
    and rejects nothing: double until it fails, then bisect geometrically."""

    def serves(rate: float) -> bool:
        w = Workload.from_records(scenario_trace(scenario, model=MODEL, n=n, rate=rate, seed=seed))
        got, rejected = _baseline_attainment(specs, w, seed)
        return got >= attainment and not rejected

    lo, hi = 0.0, 1.0
    while serves(hi):
        lo, hi = hi, hi * 2
        if hi > 4096:
            return hi
    if lo == 0.0:  # even 1 req/s fails: look below it
        lo = 1.0 / 64
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if serves(mid) else (lo, mid)
    return lo


def tightest_slo(scenario: str) -> dict:
    """The routing ``slo`` an operator declares for the trace's tightest class."""
    tight = min(SCENARIOS[scenario].classes, key=lambda c: (c.slo_tpot_ms, c.slo_ttft_ms))
    return {"ttft_ms": tight.slo_ttft_ms, "tpot_ms": tight.slo_tpot_ms}


def attainment_floor(by_policy: dict[str, dict]) -> float:
    """The attainment a policy must reach in a cell: the better baseline's, less the slack."""
    return max(by_policy[b]["slo_attainment"] for b in BASELINES) - ATTAINMENT_SLACK


@dataclass(frozen=True)
class Verdict:
    """One run in one cell against the issue's two targets."""

    x_least_load: float | None  # attributed J/token over least-load's (None: either made no token)
    attainment_ok: bool

    @property
    def energy_ok(self) -> bool:
        return self.x_least_load is not None and self.x_least_load <= ENERGY_SHARE

    @property
    def met(self) -> bool:
        return self.attainment_ok and self.energy_ok


def judge(by_policy: dict[str, dict], j_per_token: float | None, attainment: float) -> Verdict:
    """A run's verdict in the cell whose runs (the baselines among them) are ``by_policy``."""
    least_load = by_policy["least-load"]["j_per_token_attributed"]
    return Verdict(j_per_token / least_load if j_per_token and least_load else None,
                   attainment >= attainment_floor(by_policy))


def check(cell: dict, candidate: str) -> dict:
    """The issue's per-cell targets for ``candidate`` against the baselines."""
    by = {r["policy"]: r for r in cell["runs"]}
    cand = by[candidate]
    floor = attainment_floor(by)
    ll_j = by["least-load"]["j_per_token_attributed"]
    verdict = judge(by, cand["j_per_token_attributed"], cand["slo_attainment"])
    ratio = cand.get("oracle_ratio")
    capped = cand.get("oracle_ratio_capped")
    return {
        "policy": candidate,
        "attainment_ok": verdict.attainment_ok,
        "attainment": cand["slo_attainment"],
        "attainment_floor": floor,
        "energy_ok": verdict.energy_ok,
        "j_ratio_to_least_load": verdict.x_least_load,
        "oracle_ratio": ratio,
        "oracle_ok": ratio is not None and ratio <= ORACLE_AIM,
        "oracle_ratio_capped": capped,
        # the energy target is out of reach of any router when even the bound is above it
        "energy_target_reachable": bool(ll_j and cell["oracle"]["j_per_token_attributed"] is not None
                                        and cell["oracle"]["j_per_token_attributed"] <= ENERGY_SHARE * ll_j),
    }


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown(cells: list[dict], candidate: str) -> str:
    lines = ["| fleet | trace | load (req/s) | policy | J/tok attr | J/tok total | × oracle (capped) | SLO % (per class) "
             "| TTFT p50/p99 ms | TPOT p50/p99 ms | goodput/s | 429/400 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        for r in c["runs"]:
            classes = " / ".join(f"{100 * v:.0f}" for v in r["slo_attainment_by_class"].values())
            name = f"**{r['policy']}**" if r["policy"] == candidate else r["policy"]
            lines.append(
                f"| {c['fleet']} | {c['trace']} | {c['load']} ({c['rate']:.2f}) | {name} "
                f"| {_f(r['j_per_token_attributed'], '.3f')} | {_f(r['j_per_token_total'], '.3f')} "
                f"| {_f(r.get('oracle_ratio'), '.2f')} ({_f(r.get('oracle_ratio_capped'), '.2f')}) "
                f"| {100 * r['slo_attainment']:.1f} ({classes}) "
                f"| {_f(r['ttft_ms']['p50'], '.0f')}/{_f(r['ttft_ms']['p99'], '.0f')} "
                f"| {_f(r['tpot_ms']['p50'], '.1f')}/{_f(r['tpot_ms']['p99'], '.1f')} "
                f"| {r['goodput_rps']:.2f} | {r['rejected']['saturated']}/{r['rejected']['infeasible']} |")
    return "\n".join(lines)


def per_policy(cells: list[dict]) -> str:
    """Cells meeting each target, for every policy run (each checked as the candidate)."""
    n = len(cells)
    lines = [f"| policy | attainment ≥ best baseline − {100 * ATTAINMENT_SLACK:g} pt | J/token ≤ {ENERGY_SHARE:g} × least-load"
             f" | both | × oracle ≤ {ORACLE_AIM:g} |",
             "|---|---|---|---|---|"]
    for name in [r["policy"] for r in cells[0]["runs"]] if cells else []:
        ks = [check(c, name) for c in cells]
        a = sum(k["attainment_ok"] for k in ks)
        e = sum(k["energy_ok"] for k in ks)
        both = sum(k["attainment_ok"] and k["energy_ok"] for k in ks)
        o = sum(k["oracle_ok"] for k in ks)
        lines.append(f"| {name} | {a}/{n} | {e}/{n} | {both}/{n} | {o}/{n} |")
    return "\n".join(lines)


def verdicts(cells: list[dict]) -> list[str]:
    out = []
    for c in cells:
        k = c["check"]
        met = k["attainment_ok"] and k["energy_ok"]
        out.append(
            f"{c['fleet']} {c['trace']} {c['load']}: {'met' if met else 'MISSED'} "
            f"({k['policy']}: SLO {100 * k['attainment']:.1f} % vs floor {100 * k['attainment_floor']:.1f} % "
            f"{'ok' if k['attainment_ok'] else 'miss'}; J/tok {_f(k['j_ratio_to_least_load'], '.2f')} × least-load "
            f"{'ok' if k['energy_ok'] else 'miss'}"
            f"{'' if k['energy_target_reachable'] else f' (unreachable: the oracle bound is above {ENERGY_SHARE:g} × least-load)'}"
            f"; × oracle {_f(k['oracle_ratio'], '.2f')}, "
            f"× capped oracle {_f(k['oracle_ratio_capped'], '.2f')}"
            f"{'' if k['oracle_ok'] else f' (aim {ORACLE_AIM:g} missed)'})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fleet", nargs="+", choices=FLEETS, default=list(FLEETS))
    ap.add_argument("--trace", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--policy", nargs="+", default=None, help="default: every policy but random")
    ap.add_argument("--candidate", default=None, help="the policy the targets are checked for "
                    "(default: the routing default)")
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--capacity-attainment", type=float, default=CAPACITY_ATTAINMENT)
    ap.add_argument("--rate", type=float, help="skip the search: use this as the full load")
    ap.add_argument("--quick", action="store_true", help="smoke run: 60 requests, default fleet, bursty, fixed rate")
    ap.add_argument("--declare-tightest", action="store_true",
                    help="set the routing's slo to the trace's tightest class (what headroom protects); "
                         "requests carry their own targets either way")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "policy_eval.json"))
    ap.add_argument("--markdown", help="also write the table and verdicts here")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.fleet, args.trace = 60, ["default"], ["bursty"]
        args.rate = args.rate or 8.0
    names = args.policy or list(COMPARED_POLICIES)
    candidate = args.candidate or RoutingConfig().policy
    for base in (*BASELINES, candidate):
        if base not in names:
            names.append(base)
    candidate = routing_of(candidate)[0]  # its label in the runs

    started = time.perf_counter()
    cells = []
    for fleet_name in args.fleet:
        specs = load_fleet(FLEETS[fleet_name])[0].pools
        for scenario in args.trace:
            full = args.rate or max_rate(specs, scenario, args.requests, args.seed, args.capacity_attainment)
            print(f"{fleet_name} {scenario}: full load {full:.2f} req/s", file=sys.stderr)
            for load, share in LOADS.items():
                rate = full * share
                w = Workload.from_records(scenario_trace(scenario, model=MODEL, n=args.requests,
                                                         rate=rate, seed=args.seed))
                oracle, capped = oracle_bound(specs, w), oracle_bound(specs, w, concurrency=True)
                routing = {"slo": tightest_slo(scenario)} if args.declare_tightest else {}
                runs = [run(specs, w, {**doc, **routing}, seed=args.seed, label=label)
                        for label, doc in map(routing_of, names)]
                for r in runs:
                    r["oracle_ratio"] = oracle.ratio(r["j_per_token_attributed"])
                    r["oracle_ratio_capped"] = capped.ratio(r["j_per_token_attributed"])
                cell = {"fleet": fleet_name, "trace": scenario, "load": load, "rate": rate,
                        "requests": len(w), "span_s": w.span_s, "oracle": dataclasses.asdict(oracle),
                        "oracle_capped": dataclasses.asdict(capped),
                        "runs": runs}
                cell["check"] = check(cell, candidate)
                cells.append(cell)
    wall = time.perf_counter() - started
    table, lines, counts = markdown(cells, candidate), verdicts(cells), per_policy(cells)
    met = sum(c["check"]["attainment_ok"] and c["check"]["energy_ok"] for c in cells)
    summary = (f"{met}/{len(cells)} cells meet both targets for {candidate} "
               f"(attainment {sum(c['check']['attainment_ok'] for c in cells)}/{len(cells)}, "
               f"energy {sum(c['check']['energy_ok'] for c in cells)}/{len(cells)}, "
               f"oracle ≤ {ORACLE_AIM:g} {sum(c['check']['oracle_ok'] for c in cells)}/{len(cells)}); {wall:.0f} s")
    print(table + "\n\n" + counts + "\n\n" + "\n".join(lines) + "\n\n" + summary)
    doc = {"benchmark": "policy_eval", "date": datetime.now(timezone.utc).date().isoformat(),
           "command": "python bench/policy_eval.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": {"python": platform.python_version(), "cores_used": 1},
           "candidate": candidate, "policies": names, "declare_tightest": args.declare_tightest, "requests": args.requests, "seed": args.seed,
           "summary": summary, "wall_s": wall, "cells": cells}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n\n" + counts + "\n\n" + "\n".join(f"- {x}" for x in lines)
                                       + "\n\n" + summary + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
