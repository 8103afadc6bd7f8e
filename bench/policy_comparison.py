"""Routing policies side by side on the live gateway: joules per token and SLO attainment.

Replays one seeded trace (Poisson arrivals, mixed chat / long-document
lengths) through a running hetserve once per policy, switching the policy
live with ``PUT /admin/routing`` between runs, and prints one table with each
policy's attributed J/token as a ratio to ``least-load``.

    hetserve serve --admin-key KEY &     # the default emulated fleet
    python bench/policy_comparison.py --admin-key KEY
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx

from loadtests.cli import main as loadtest
from fleet.trace import write_trace
from loadtests.workloads import generate_trace

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def wait_idle(base: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pools = httpx.get(f"{base}/v1/fleet?profiles=false", timeout=10).json()["pools"]
        if all(p["in_flight"] == 0 for p in pools):
            return
        time.sleep(0.5)
    raise RuntimeError("the fleet did not drain")


def run_policy(
    base: str, admin_key: str, policy: str, trace: Path, out: Path, slo: tuple[float, float], n_requests: int
) -> dict:
    r = httpx.put(f"{base}/admin/routing", json={"policy": policy}, headers={"authorization": f"Bearer {admin_key}"})
    r.raise_for_status()
    wait_idle(base)
    code = loadtest([
        "run", "--base-url", base, "--model", MODEL, "--dataset", "trace", str(trace), "--endpoint", "completions",
        "--slo-ttft-ms", str(slo[0]), "--slo-tpot-ms", str(slo[1]), "--label", policy, "--out", str(out),
        "--requests", str(n_requests), "--no-progress", "--timeout", "300",
    ])
    if code != 0:
        raise RuntimeError(f"load test for {policy} exited {code}")
    return json.loads((out / f"{policy}.json").read_text())["summary"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--policies", nargs="+", default=["efficiency", "slo-efficiency", "least-load", "round-robin"])
    ap.add_argument("--requests", type=int, default=240)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slo-ttft-ms", type=float, default=3000)
    ap.add_argument("--slo-tpot-ms", type=float, default=60)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="hetserve-policies-"))
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "trace.jsonl"
    write_trace(trace, generate_trace(model=MODEL, rate=args.rate, n=args.requests, arrival="poisson",
                                      lengths="mixed", seed=args.seed))
    slo = (args.slo_ttft_ms, args.slo_tpot_ms)
    results = {p: run_policy(args.base_url, args.admin_key, p, trace, out, slo, args.requests) for p in args.policies}
    base = results.get("least-load", {}).get("energy") or {}
    print(f"\n{args.requests} requests, Poisson {args.rate}/s, mixed lengths (seed {args.seed}); "
          f"SLO TTFT {slo[0]:.0f} ms, TPOT {slo[1]:.0f} ms; reports in {out}\n")
    print("| policy | J/token (attributed) | vs least-load | J/token incl. idle | SLO attainment | "
          "TTFT p50 / p99 ms | TPOT p50 / p99 ms | share per pool |")
    print("|---|---|---|---|---|---|---|---|")
    for policy, s in results.items():
        e = s.get("energy") or {}
        jpt = e.get("j_per_token")
        ratio = f"{jpt / base['j_per_token']:.2f}" if jpt and base.get("j_per_token") else "–"
        shares = ", ".join(f"{name} {v['share']:.0%}" for name, v in sorted(s["pools"].items()))
        print(f"| {policy} | {jpt:.3f} | {ratio} | {e.get('j_per_token_total', 0):.3f} | "
              f"{s['good'] / max(s['requests'], 1):.1%} | {s['ttft_ms']['p50']:.0f} / {s['ttft_ms']['p99']:.0f} | "
              f"{s['tpot_ms']['p50']:.1f} / {s['tpot_ms']['p99']:.1f} | {shares} |")
    (out / "comparison.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
