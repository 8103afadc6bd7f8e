"""Simulator speed and memory: requests simulated per second of wall time on
one core, and a million-request run's peak memory.

    python bench/bench_simulator.py [--requests 1000000] [--rate 20]

Runs the shipped sample trace under every default policy, then a synthetic
chat workload of ``--requests`` at ``--rate``/s on the default fleet (policy
``efficiency``), printing requests/s and the peak resident set size.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet.config import load_fleet  # noqa: E402
from sim import Workload, simulate  # noqa: E402
from sim.cli import DEFAULT_POLICIES  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--trace", default=str(ROOT / "bench/traces/sample.jsonl"))
    args = p.parse_args()
    specs = load_fleet()[0].pools

    sample = Workload.read(args.trace)
    for policy in DEFAULT_POLICIES:
        r = simulate(specs, sample, {"policy": policy})
        print(f"sample trace  {policy:<15} {len(sample):>9,} requests  {r.wall_s:6.2f} s  "
              f"{len(sample) / r.wall_s:>8,.0f} req/s")

    started = time.perf_counter()
    big = Workload.synthetic(MODEL, args.requests, args.rate, seed=1)
    r = simulate(specs, big, {"policy": "efficiency"})
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"synthetic     efficiency      {len(big):>9,} requests  {r.wall_s:6.2f} s  "
          f"{len(big) / r.wall_s:>8,.0f} req/s  ({time.perf_counter() - started:.1f} s with setup), "
          f"{r.span_s / 3600:.1f} h simulated, completed {r.completed:,}, peak RSS {rss_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
