"""Does the headroom rule of ``slo-energy`` protect tight-SLO traffic? A simulated measurement.

    python bench/headroom.py [--requests 3000] [--rates 6 12 18]

A mixed trace (``loadtests.workloads``' ``mixed`` lengths, Poisson arrivals)
on the embedded default fleet; 30 % of requests are *tight* (TTFT 400 ms,
TPOT 40 ms: the routing's ``slo``), the rest *relaxed* (TTFT 4 s, TPOT
150 ms, sent as the request's own targets). Each rate runs ``slo-energy``
with and without its ``headroom`` filter, ``least-load`` and ``latency``,
and prints per-class SLO attainment, attributed J/token and the forecast's
relative error; JSON goes to ``bench/results/headroom.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.config import load_fleet  # noqa: E402
from routing import load_routing_config  # noqa: E402
from sim import Workload  # noqa: E402
from sim.pools import build_pools  # noqa: E402
from sim.results import summarize  # noqa: E402
from sim.simulation import Simulation  # noqa: E402
from sim.state import OK  # noqa: E402
from sim.tune import spelled_out  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TIGHT, RELAXED = (400.0, 40.0), (4000.0, 150.0)
SLO = {"slo": {"ttft_ms": TIGHT[0], "tpot_ms": TIGHT[1]}}
ARMS = {
    "slo-energy": {"policy": "slo-energy", **SLO},
    "slo-energy, no headroom": {**spelled_out("slo-energy", margin=0.1, headroom=None), **SLO},
    "least-load": {"policy": "least-load", **SLO},
    "latency": {"policy": "latency", **SLO},
}


def workload(n: int, rate: float, seed: int) -> tuple[Workload, np.ndarray]:
    w = Workload.synthetic(MODEL, n, rate, lengths="mixed", seed=seed)
    tight = np.random.default_rng(seed + 1).random(n) < 0.3
    ttft = np.where(tight, TIGHT[0], RELAXED[0])
    tpot = np.where(tight, TIGHT[1], RELAXED[1])
    return Workload(w.t, w.model, w.models, w.prompt, w.output, ttft, tpot), tight


def attainment(sim: Simulation, mask: np.ndarray) -> float:
    st, w = sim.state, sim.workload
    ok = st.status == OK
    out = w.output
    tpot = np.where(out > 1, (st.e2e - st.ttft) / np.maximum(out - 1, 1), 0.0)
    good = ok & (st.ttft * 1e3 <= w.slo_ttft_ms) & (tpot * 1e3 <= w.slo_tpot_ms)
    return float(good[mask].sum() / max(mask.sum(), 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rates", type=float, nargs="+", default=[6.0, 12.0, 18.0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "bench/results/headroom.json"))
    args = p.parse_args()
    specs = load_fleet()[0].pools
    rows = []
    print(f"{'rate':>5} {'policy':<24} {'tight':>7} {'relaxed':>8} {'all':>7} {'J/tok':>7} "
          f"{'ttft err p50/p90':>17} {'tpot err p50/p90':>17}  share h100/rngd/atom")
    for rate in args.rates:
        w, tight = workload(args.requests, rate, args.seed)
        for arm, routing in ARMS.items():
            sim = Simulation(w, build_pools(specs, w.models), load_routing_config(routing)).run()
            r = summarize(sim, arm)
            e = r.predictor_error
            row = {
                "rate": rate, "policy": arm, "tight": attainment(sim, tight), "relaxed": attainment(sim, ~tight),
                "all": r.slo_attainment, "j_per_token_attributed": r.j_per_token_attributed,
                "rejected": sum(r.rejected.values()),
                "ttft_rel_error": e and {"p50": e.ttft.p50, "p90": e.ttft.p90},
                "tpot_rel_error": e and {"p50": e.tpot.p50, "p90": e.tpot.p90},
                "share": {pr.name: pr.share for pr in r.pools},
            }
            rows.append(row)
            err = (f"{e.ttft.p50:.2f}/{e.ttft.p90:.2f}", f"{e.tpot.p50:.2f}/{e.tpot.p90:.2f}") if e else ("-", "-")
            print(f"{rate:>5g} {arm:<24} {row['tight']:>7.1%} {row['relaxed']:>8.1%} {row['all']:>7.1%} "
                  f"{r.j_per_token_attributed:>7.3f} {err[0]:>17} {err[1]:>17}  "
                  + "/".join(f"{s:.0%}" for s in row["share"].values()), flush=True)
    Path(args.out).write_text(json.dumps({"requests": args.requests, "seed": args.seed, "tight": TIGHT,
                                          "relaxed": RELAXED, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
