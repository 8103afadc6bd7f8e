"""Fidelity check: replay one trace through a running gateway and through the
simulator, and compare J/token, output throughput and p50 TTFT.

    python bench/sim_fidelity.py --base-url http://127.0.0.1:8000 \
        --trace bench/traces/sample.jsonl [--fleet FLEET.yaml] [--requests N] [--out DIR]

The gateway should run the emulated fleet (``--fleet``, default the embedded
one) with the routing config the simulation uses (the fleet's ``routing``).
The live side is driven by ``loadtests`` (arrival ``trace``, streaming, energy
from ``/v1/fleet`` snapshots). Only the first ``--requests`` of the trace are
used on both sides. Exit code 0 when every metric is within ``--tolerance``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.config import load_fleet  # noqa: E402
from loadtests import runner  # noqa: E402
from loadtests.config import DataSpec, LoadSpec, RunSpec  # noqa: E402
from fleet.trace import read_trace, write_trace  # noqa: E402
from sim import Workload, simulate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--fleet", help="the fleet the gateway runs (default: the embedded default)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--tolerance", type=float, default=0.25, help="relative difference allowed")
    p.add_argument("--out", help="folder for fidelity.json")
    args = p.parse_args(argv)

    records = list(islice(read_trace(args.trace), args.requests))
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        write_trace(trace, records)
        spec = RunSpec(label="fidelity", base_url=args.base_url,
                       load=LoadSpec(arrival="trace", requests=len(records)),
                       data=DataSpec(dataset="trace", trace=str(trace)))
        live = asyncio.run(runner.run(spec, progress=False)).summary
    fleet, _ = load_fleet(args.fleet)
    sim = simulate(fleet.pools, Workload.from_records(records), fleet.routing, label="sim")

    energy = live.energy
    rows = {
        "j_per_token_attributed": (energy and energy.j_per_token, sim.j_per_token_attributed),
        "j_per_token_total": (energy and energy.j_per_token_total, sim.j_per_token_total),
        "output_tok_s": (live.output_throughput, sim.throughput_tok_s),
        "ttft_p50_ms": (live.ttft_ms.p50, sim.ttft_ms.p50),
    }
    ok = True
    report = {}
    print(f"{'metric':<24}{'live':>12}{'sim':>12}{'sim/live':>10}")
    for name, (a, b) in rows.items():
        ratio = b / a if a and b is not None else None
        ok &= ratio is not None and abs(ratio - 1) <= args.tolerance
        report[name] = {"live": a, "sim": b, "ratio": ratio}
        print(f"{name:<24}{a if a is not None else float('nan'):>12.4g}"
              f"{b if b is not None else float('nan'):>12.4g}"
              f"{ratio if ratio is not None else float('nan'):>10.3f}")
    print(f"live: {live.ok}/{live.requests} ok; sim: {sim.completed}/{sim.requests} completed")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fidelity.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
