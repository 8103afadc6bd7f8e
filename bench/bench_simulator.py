"""Simulator speed and memory: requests simulated per second of wall time on
one core, and a million-request run's peak memory.

    python bench/bench_simulator.py [--requests 1000000] [--rate 20] [--rounds 3]

Runs the shipped sample trace under every default policy, then a synthetic
chat workload of ``--requests`` at ``--rate``/s on the default fleet (policy
``slo-energy``, the default), printing requests/s, the peak resident set size
and, for policies that forecast, the forecast's relative error (median/p90
of ``|predicted - observed| / observed`` for TTFT and TPOT). JSON goes to
``bench/results/simulator.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.config import load_fleet  # noqa: E402
from sim import Workload, simulate  # noqa: E402
from routing import DEFAULT_POLICY  # noqa: E402
from routing.presets import COMPARED_POLICIES  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--trace", default=str(ROOT / "bench/traces/sample.jsonl"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench/results/simulator.json"))
    args = p.parse_args()
    specs = load_fleet()[0].pools
    doc: dict = {"sample": [], "rounds": args.rounds}

    sample = Workload.read(args.trace)
    for rnd in range(args.rounds):  # interleaved rounds: the machine may be shared
        for policy in COMPARED_POLICIES:
            r = simulate(specs, sample, {"policy": policy})
            e = r.predictor_error
            err = (f"  forecast error ttft {e.ttft.p50:.2f}/{e.ttft.p90:.2f} tpot {e.tpot.p50:.2f}/{e.tpot.p90:.2f}"
                   if e else "")
            print(f"sample trace  {policy:<15} {len(sample):>9,} requests  {r.wall_s:6.2f} s  "
                  f"{len(sample) / r.wall_s:>8,.0f} req/s{err}", flush=True)
            doc["sample"].append({"round": rnd, "policy": policy, "requests_per_s": len(sample) / r.wall_s,
                                  "predictor_error": dataclasses.asdict(e) if e else None})

    started = time.perf_counter()
    big = Workload.synthetic(MODEL, args.requests, args.rate, seed=1)
    r = simulate(specs, big, {"policy": DEFAULT_POLICY})
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"synthetic     {DEFAULT_POLICY:<15} {len(big):>9,} requests  {r.wall_s:6.2f} s  "
          f"{len(big) / r.wall_s:>8,.0f} req/s  ({time.perf_counter() - started:.1f} s with setup), "
          f"{r.span_s / 3600:.1f} h simulated, completed {r.completed:,}, peak RSS {rss_mb:,.0f} MB")
    doc["synthetic"] = {"policy": DEFAULT_POLICY, "requests": len(big), "requests_per_s": len(big) / r.wall_s,
                        "peak_rss_mb": rss_mb, "completed": r.completed}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
