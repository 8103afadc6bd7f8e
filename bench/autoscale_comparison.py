"""Autoscaled fleet against the planner's fixed fleets on a diurnal trace (simulated).

Run: ``python bench/autoscale_comparison.py`` → ``bench/results/autoscale_comparison.json``.

The trace: one compressed "day" of chat requests whose Poisson rate follows
``trough + (peak - trough) · (1 - cos 2πt/day) / 2``, seeded. The fixed
fleets are what ``hetserve plan`` gives for it (sized for its busiest minute):
the planned mix, the cheapest single-hardware fleet meeting the target and the
best GPU-only plan. The autoscaled fleets have a pool per hardware type the
planner may use, ``max_replicas`` the count that carries the peak on that type
alone, ``min_replicas`` 1 on the type with the least J/token idle included and
0 elsewhere; they differ only in who scales them: the efficiency-aware scaler
(``routing.scaler``) or Ray Serve's default per-pool rule. Every fleet runs
the same routing (the default fleet's) under the same SLO targets.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from fleet.autoscaling import fleet_figures
from fleet.config import FleetConfig, load_fleet
from fleet.profiles import fleet_profiles
from fleet.trace import TraceRecord, write_trace
from loadtests.workloads import sample_lengths, unit_gaps
from plan.cli import build_parser, run_plan
from plan.milp import PlanInfeasible
from plan.planner import Problem, build_problem, fleet_of, plan_for
from routing.config import SloConfig
from sim.run import simulate
from sim.workload import Workload
from workers.spec import AutoscalingSpec, PoolSpec

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SLO_TTFT_MS, SLO_TPOT_MS = 2000.0, 100.0


def diurnal_times(n_max: int, trough: float, peak: float, day_s: float, seed: int) -> np.ndarray:
    """Poisson arrivals over one ``day_s`` at the diurnal rate, by time-rescaling unit-rate arrivals."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, day_s, 20001)
    cum = trough * grid + (peak - trough) / 2 * (grid - day_s / (2 * math.pi) * np.sin(2 * math.pi * grid / day_s))
    u = np.cumsum(unit_gaps(n_max, "poisson", rng))
    u = u[u < cum[-1]]
    return np.interp(u, cum, grid)


def diurnal_trace(trough: float, peak: float, day_s: float, seed: int) -> list[TraceRecord]:
    t = diurnal_times(int(peak * day_s) + 1000, trough, peak, day_s, seed)
    prompts, outputs = sample_lengths("chat", len(t), np.random.default_rng(seed + 1))
    return [TraceRecord(t=float(a), model=MODEL, prompt_tokens=int(p), output_tokens=int(o))
            for a, p, o in zip(t, prompts, outputs)]


def autoscaled(problem: Problem, base: FleetConfig, efficiency: bool, startup_s: float, up_s: float,
               down_s: float) -> FleetConfig:
    """A pool per hardware type, each allowed to grow to what carries the trace's peak alone."""
    most = {}
    for h in problem.hardware:
        try:
            most[h] = plan_for(problem, [h], "cost", h).replicas.get(h, 0)
        except PlanInfeasible:
            continue
    slo = SloConfig(ttft_ms=SLO_TTFT_MS, tpot_ms=SLO_TPOT_MS)
    specs = {h: _scaled(problem.templates[h], 0, n, efficiency, startup_s, up_s, down_s) for h, n in most.items() if n}
    figs = fleet_figures(list(specs.values()), fleet_profiles(specs.values()), slo)
    best = min(figs.values(), key=lambda f: (not f.meets_slo, f.load(1, 0, 0).total_j_per_token)).name
    pools = [_scaled(problem.templates[h], 1 if s.name == best else 0, most[h], efficiency, startup_s, up_s, down_s)
             for h, s in specs.items()]
    return base.model_copy(update={"pools": pools})


def _scaled(spec: PoolSpec, lo: int, hi: int, efficiency: bool, startup_s: float, up_s: float,
            down_s: float) -> PoolSpec:
    data = spec.model_dump(exclude={"replicas", "autoscaling"})
    data["autoscaling"] = AutoscalingSpec(min_replicas=lo, max_replicas=hi, upscale_delay_s=up_s,
                                          downscale_delay_s=down_s, startup_s=startup_s, efficiency=efficiency)
    return PoolSpec.model_validate(data)


def row(label: str, fleet: FleetConfig, w: Workload, result=None) -> dict:
    started = time.perf_counter()
    r = result or simulate(fleet.pools, w, fleet.routing, label=label)
    mix = {p.name: (f"{p.autoscaling.min_replicas}-{p.autoscaling.max_replicas}" if p.autoscaling else p.replicas)
           for p in fleet.pools}
    return {
        "fleet": label, "pools": mix,
        "mean_replicas": {p.name: round(p.mean_replicas, 2) for p in r.pools},
        "j_per_token_total": r.j_per_token_total, "j_per_token_attributed": r.j_per_token_attributed,
        "usd_per_mtok": r.usd_per_mtok, "slo_attainment": r.slo_attainment,
        "ttft_p99_ms": r.ttft_ms.p99, "tpot_p99_ms": r.tpot_ms.p99,
        "requests": r.requests, "output_tokens": r.output_tokens, "sim_wall_s": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day-s", type=float, default=1800.0, help="length of the compressed day")
    ap.add_argument("--trough", type=float, default=3.0, help="req/s at night")
    ap.add_argument("--peak", type=float, default=60.0, help="req/s at midday")
    ap.add_argument("--startup-s", type=float, default=60.0, help="replica start-up time")
    ap.add_argument("--upscale-delay-s", type=float, default=15.0)
    ap.add_argument("--downscale-delay-s", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="bench/results/autoscale_comparison.json")
    a = ap.parse_args()
    records = diurnal_trace(a.trough, a.peak, a.day_s, a.seed)
    w = Workload.from_records(records).with_default_slo(SLO_TTFT_MS, SLO_TPOT_MS)
    base, _ = load_fleet(None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diurnal.jsonl"
        write_trace(path, records)
        args = build_parser().parse_args(["--trace", str(path), "--objective", "cost",
                                          "--slo-ttft-ms", str(SLO_TTFT_MS), "--slo-tpot-ms", str(SLO_TPOT_MS),
                                          "--out", str(Path(tmp) / "fleet.yaml")])
        chosen, alts = run_plan(args)
        problem = build_problem(w, base, [h.strip() for h in args.hardware.split(",")], args.window_s)
    fixed = [chosen, *alts]
    fleets = [fleet_of(v.plan, problem, base) for v in fixed]
    for v, fleet in zip(fixed, fleets):
        rows.append(row(f"fixed: {v.plan.label}", fleet, w, v.result))
    for efficiency, label in ((True, "autoscaled: efficiency-aware"), (False, "autoscaled: Serve default rule")):
        fleet = autoscaled(problem, base, efficiency, a.startup_s, a.upscale_delay_s, a.downscale_delay_s)
        rows.append(row(label, fleet, w))
    doc = {"trace": {"kind": "diurnal chat", "day_s": a.day_s, "trough_rps": a.trough, "peak_rps": a.peak,
                     "requests": len(w), "seed": a.seed},
           "slo": {"ttft_ms": SLO_TTFT_MS, "tpot_ms": SLO_TPOT_MS},
           "autoscaling": {"startup_s": a.startup_s, "upscale_delay_s": a.upscale_delay_s,
                           "downscale_delay_s": a.downscale_delay_s},
           "routing": base.routing.model_dump(exclude_defaults=True), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    for r in rows:
        print(f"{r['fleet']:34s} {json.dumps(r['pools']):44s} total {r['j_per_token_total']:.4f} "
              f"attr {r['j_per_token_attributed']:.4f} J/tok  {r['usd_per_mtok']:.3f} $/Mtok  "
              f"SLO {100 * r['slo_attainment']:.1f} %  mean replicas {r['mean_replicas']}")


if __name__ == "__main__":
    main()
