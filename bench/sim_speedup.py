"""Simulator speed side by side with an older commit: the sample trace under ``slo-energy``.

    .venv/bin/python bench/sim_speedup.py --baseline e9eb965 [--rounds 3] [--runs 5]

Checks the baseline out in a temporary ``git worktree`` and runs both
checkouts' simulators in separate processes, interleaved per round (the
machine may be shared); prints each round's median requests/s of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_RUN = """
import statistics, sys, time
sys.path.insert(0, {root!r})
from fleet.config import load_fleet
from sim import Workload, simulate
specs, w = load_fleet()[0].pools, Workload.read({trace!r})
rates = []
for _ in range({runs}):
    t = time.perf_counter(); simulate(specs, w, {{"policy": "slo-energy"}}); rates.append(len(w) / (time.perf_counter() - t))
print(round(statistics.median(rates)))
"""


def _rate(root: Path, runs: int) -> int:
    code = _RUN.format(root=str(root), trace=str(ROOT / "bench/traces/sample.jsonl"), runs=runs)
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="the commit to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5, help="simulations per checkout per round")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.baseline], check=True)
        try:
            for rnd in range(args.rounds):
                old, new = _rate(base, args.runs), _rate(ROOT, args.runs)
                print(f"round {rnd}: baseline {old:,} req/s, this checkout {new:,} req/s, {new / old:.2f}x")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
