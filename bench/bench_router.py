"""Decision time of the router, in process: 8 pools with profiles.

Run: python bench/bench_router.py [--decisions 100000] [--policy efficiency] [--rounds 3]
Prints median and p99 microseconds per ``Router.choose`` call, and the same
with the human-readable reason written (the gateway reads it; the simulator
does not), policies interleaved over rounds; JSON to bench/results/router.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing import (  # noqa: E402
    DEFAULT_BATCH_BUCKETS,
    DEFAULT_SEQ_BUCKETS,
    POLICIES,
    Cell,
    EfficiencyProfile,
    PoolState,
    RequestShape,
    build_router,
    load_routing_config,
)

MODEL = "llama-8b"
# (name, hardware, static batch buckets, max seq, capacity, J/tok at batch 1, at 256)
POOLS = [
    ("h100-a", "nvidia-h100", (), 32768, 256, 1.2, 0.15),
    ("h100-b", "nvidia-h100", (), 32768, 256, 1.2, 0.15),
    ("h200", "nvidia-h200", (), 32768, 256, 1.1, 0.13),
    ("l40s", "nvidia-l40s", (), 16384, 128, 1.5, 0.3),
    ("rngd-a", "furiosa-rngd", (1, 2, 4, 8, 16, 32, 64), 8192, 64, 0.35, 0.25),
    ("rngd-b", "furiosa-rngd", (1, 2, 4, 8, 16, 32, 64), 8192, 64, 0.35, 0.25),
    ("atom", "rebellions-atom", (1, 2, 4, 8), 4096, 8, 0.3, 0.3),
    ("cpu", "xeon", (), 8192, 4, 5.0, 5.0),
]


def _profile(name, hw, max_seq, j1, j256):
    cells = []
    for i, b in enumerate(DEFAULT_BATCH_BUCKETS):
        j = j1 + (j256 - j1) * i / (len(DEFAULT_BATCH_BUCKETS) - 1)
        for s in DEFAULT_SEQ_BUCKETS:
            cells.append(Cell(b, s, throughput_tok_s=100.0 * b, ttft_ms=s / 20, tpot_ms=10 + b / 8,
                              watts=100.0 * b * j, j_per_token=j * (1 + s / 32768), cost_per_mtok=j,
                              samples=20, provenance="calibrated", feasible=s <= max_seq))
    return EfficiencyProfile(name, hw, MODEL, cells=cells)


def _fleet(rng):
    return [
        PoolState(n, hw, (MODEL,), running=rng.randrange(cap), capacity=cap, max_seq_len=ms,
                  batch_buckets=bb, profile=_profile(n, hw, ms, j1, j256))
        for n, hw, bb, ms, cap, j1, j256 in POOLS
    ]


def bench(policy: str, decisions: int, reason: bool = False) -> tuple[float, float]:
    rng = random.Random(0)
    config = load_routing_config({"policy": policy, "slo": {"ttft_ms": 500, "tpot_ms": 30}})
    router = build_router(config, rng=random.Random(1))
    fleets = [_fleet(rng) for _ in range(16)]
    shapes = [RequestShape(MODEL, rng.randrange(16, 6000), rng.randrange(16, 1024), rng.choice((1, 1, 1, 2, 4)))
              for _ in range(1024)]
    clock = time.perf_counter_ns
    times = []
    for i in range(decisions):
        shape, fleet = shapes[i & 1023], fleets[i & 15]
        t0 = clock()
        if reason:
            router.choose(shape, fleet).reason
        else:
            router.choose(shape, fleet)
        times.append(clock() - t0)
    times.sort()
    return statistics.median(times) / 1000, times[int(len(times) * 0.99)] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=100_000)
    ap.add_argument("--policy", choices=POLICIES, action="append")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results/router.json"))
    args = ap.parse_args()
    print(f"{'round':<6}{'policy':<16}{'median µs':>10}{'p99 µs':>10}{'+reason med':>12}"
          f"   ({args.decisions} decisions, {len(POOLS)} pools)")
    rows = []
    for rnd in range(args.rounds):
        for policy in args.policy or POLICIES:
            med, p99 = bench(policy, args.decisions)
            with_reason, _ = bench(policy, args.decisions, reason=True)
            print(f"{rnd:<6}{policy:<16}{med:>10.1f}{p99:>10.1f}{with_reason:>12.1f}", flush=True)
            rows.append({"round": rnd, "policy": policy, "median_us": med, "p99_us": p99,
                         "median_us_with_reason": with_reason})
    Path(args.out).write_text(json.dumps({"decisions": args.decisions, "pools": len(POOLS), "rows": rows},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
