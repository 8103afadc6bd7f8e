"""Routing policies on the live gateway, one evaluation trace at two loads, and
the simulator on the same requests beside each run (its fidelity).

    hetserve serve --port PORT --admin-key KEY &          # the default fleet
    python bench/policy_live.py --base-url http://127.0.0.1:PORT --admin-key KEY \\
        [--trace bursty] [--requests 200] [--rates 4 8] [--out DIR]

For each rate the trace (``sim.scenarios``, seeded) is replayed once per
policy, the policy switched with ``PUT /admin/routing`` and the fleet left
to drain between runs; each request carries its own targets as
``x-hetserve-slo-*`` headers; J/token comes from ``/v1/fleet``'s energy
counters. The same records then run through the simulator under the same
policy with online learning on (the gateway learns; its learned profiles
carry from one run to the next, as the live gateway's do), and ``sim_fidelity``
compares the two: SLO attainment within 5 points, attributed J/token within
10 %, TTFT p50 and p99 within 20 %. The forecast's error live is read from
the gateway's ``/v1/requests/recent`` ring, which keeps the last 256 requests:
with ``--requests`` above 256 it covers the last 256 of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet.config import load_fleet  # noqa: E402
from fleet.trace import write_trace  # noqa: E402
from routing import DEFAULT_POLICY  # noqa: E402
from loadtests import runner  # noqa: E402
from loadtests.config import DataSpec, LoadSpec, RunSpec  # noqa: E402
from sim.scenarios import SCENARIOS, scenario_trace  # noqa: E402
from policy_comparison import wait_idle  # noqa: E402
from sim_fidelity import (  # noqa: E402
    compare,
    live_figures,
    live_forecast_error,
    markdown_rows,
    probe_dispatch,
    sim_figures,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
POLICIES = [DEFAULT_POLICY, "efficiency", "slo-efficiency", "latency", "least-load", "round-robin"]


def set_policy(base: str, admin_key: str, routing: dict) -> None:
    r = httpx.put(f"{base}/admin/routing", json=routing, headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
    r.raise_for_status()


def recent(base: str, after: int, limit: int) -> dict:
    """``GET /v1/requests/recent``: finished requests after ``after`` (the ring keeps 256)."""
    return httpx.get(f"{base}/v1/requests/recent", params={"after": after, "limit": limit}, timeout=10).json()


def live_run(base: str, trace: Path, label: str, n: int) -> runner.RunOutcome:
    spec = RunSpec(label=label, base_url=base, endpoint="completions", timeout_s=300,
                   load=LoadSpec(arrival="trace", requests=n), data=DataSpec(dataset="trace", trace=str(trace)))
    return asyncio.run(runner.run(spec, progress=False))


def forecast_rows(rows: list[dict]) -> list[str]:
    """Forecast accuracy per run: relative error p50 / p90, live and simulated."""
    def cell(err: dict | None, metric: str) -> str:
        return "–" if not err else f"{err[metric + '_p50']:.2f} / {err[metric + '_p90']:.2f}"
    out = ["| rate | policy | TTFT error live | TTFT error sim | TPOT error live | TPOT error sim |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        live, sim = r["live"].get("forecast_error"), r["sim"].get("forecast_error")
        out.append(f"| {r['rate']:g} | {r['policy']} | {cell(live, 'ttft')} | {cell(sim, 'ttft')} "
                   f"| {cell(live, 'tpot')} | {cell(sim, 'tpot')} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--trace", choices=SCENARIOS, default="bursty")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rates", type=float, nargs="+", default=[4.0, 8.0])
    ap.add_argument("--policies", nargs="+", default=POLICIES)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fleet", help="the fleet the gateway runs (default: the embedded default)")
    ap.add_argument("--probe-pool", default="h100", help="pool the request-path probe is pinned to")
    ap.add_argument("--out", default="bench/results/policy_live.json")
    args = ap.parse_args(argv)

    specs = load_fleet(args.fleet)[0].pools
    rows, learned = [], None  # the gateway's learned profiles outlive policy switches: so do the sim's
    probes = []
    for rate in args.rates:
        records = scenario_trace(args.trace, model=MODEL, n=args.requests, rate=rate, seed=args.seed)
        trace = Path(args.out).with_suffix(f".{rate:g}.trace.jsonl")
        trace.parent.mkdir(parents=True, exist_ok=True)
        write_trace(trace, records)
        for policy in args.policies:
            set_policy(args.base_url, args.admin_key, {"policy": policy})
            wait_idle(args.base_url)
            probe = probe_dispatch(args.base_url, specs, args.probe_pool)
            probes.append(probe)
            wait_idle(args.base_url)
            started = time.monotonic()
            seq = recent(args.base_url, 0, 1)["last_seq"]
            outcome = live_run(args.base_url, trace, policy, len(records))
            live = live_figures(outcome)
            live["forecast_error"] = live_forecast_error(recent(args.base_url, seq, 256)["requests"])
            # before: the simulator as it was (no online learning, fresh profiles, no request path)
            before, _ = sim_figures(specs, records, {"policy": policy}, learn=False)
            bare, _ = sim_figures(specs, records, {"policy": policy}, profiles=learned)
            sim, learned = sim_figures(specs, records, {"policy": policy}, profiles=learned,
                                       dispatch_s=probe["dispatch_s"])
            row = {"rate": rate, "policy": policy, "probe": probe, "live": live, "sim": sim,
                   "fidelity": compare(live, sim), "fidelity_no_path": compare(live, bare),
                   "fidelity_before": compare(live, before),
                   "wall_s": time.monotonic() - started}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("rate", "policy", "probe", "fidelity")}), flush=True)
            Path(args.out).write_text(json.dumps({"trace": args.trace, "requests": args.requests,
                                                  "seed": args.seed, "rows": rows}, indent=1) + "\n")
    print("\n".join(markdown_rows(rows)))
    print("\n".join(forecast_rows(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
