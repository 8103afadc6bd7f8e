"""Fidelity check: replay one trace through a running gateway and through the
simulator, and compare SLO attainment, J/token and TTFT/TPOT percentiles.

    python bench/sim_fidelity.py --base-url http://127.0.0.1:8000 \\
        --trace bench/traces/sample.jsonl [--fleet FLEET.yaml] [--requests N] [--out DIR]

The gateway should run the emulated fleet (``--fleet``, default the embedded
one) with the routing config the simulation uses (the fleet's ``routing``).
The live side is driven by ``loadtests`` (arrival ``trace``, each request's
targets as ``x-hetserve-slo-*`` headers, energy from ``/v1/fleet``
snapshots); the simulated side learns profiles online as the gateway does.
Only the first ``--requests`` of the trace are used on both sides. Exit code
0 when every metric is within its tolerance (:data:`TOLERANCES`).
``bench/policy_live.py`` runs this comparison for every policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.config import load_fleet  # noqa: E402
from fleet.trace import TraceRecord, read_trace, write_trace  # noqa: E402
from loadtests import runner  # noqa: E402
from loadtests.config import DataSpec, LoadSpec, RunSpec  # noqa: E402
from loadtests.metrics import is_good  # noqa: E402
from routing.config import load_routing_config  # noqa: E402
from fleet.api import PIN_HEADER  # noqa: E402
from sim import Simulation, Workload, build_pools, simulate  # noqa: E402
from sim.results import PredictorError, by_class, summarize  # noqa: E402

#: metric -> (kind, allowed difference): "points" of a share, or "relative".
TOLERANCES = {
    "slo_attainment": ("points", 0.05),
    "j_per_token_attributed": ("relative", 0.10),
    "ttft_p50_ms": ("relative", 0.20),
    "ttft_p99_ms": ("relative", 0.20),
    "tpot_p50_ms": ("relative", None),  # reported, no target
    "j_per_token_total": ("relative", None),
}


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def live_figures(outcome: runner.RunOutcome) -> dict:
    """What a live run measured, in the keys of :data:`TOLERANCES`."""
    s, results = outcome.summary, outcome.results
    ok = [r for r in results if r.ok]
    ttft = [r.ttft_s * 1e3 for r in ok if r.ttft_s is not None]
    tpot = [r.tpot_s * 1e3 for r in ok if r.tpot_s is not None and r.output_tokens > 1]
    good = np.array([is_good(r, outcome.spec.slo) for r in results])
    nan = float("nan")
    slo_ttft = np.array([nan if r.slo_ttft_ms is None else r.slo_ttft_ms for r in results])
    slo_tpot = np.array([nan if r.slo_tpot_ms is None else r.slo_tpot_ms for r in results])
    e = s.energy
    pools = [r.pool for r in ok if r.pool]
    return {
        "requests": len(results), "completed": len(ok),
        "slo_attainment": float(good.mean()) if len(good) else 0.0,
        "slo_attainment_by_class": by_class(slo_ttft, slo_tpot, good),
        "j_per_token_attributed": e.j_per_token if e else None,
        "j_per_token_total": e.j_per_token_total if e else None,
        "ttft_p50_ms": _pct(ttft, 50), "ttft_p99_ms": _pct(ttft, 99),
        "tpot_p50_ms": _pct(tpot, 50), "tpot_p99_ms": _pct(tpot, 99),
        "share": {p: pools.count(p) / len(pools) for p in sorted(set(pools))},
        "errors": s.errors,
        "ttft_ms_each": [None if r.ttft_s is None else round(r.ttft_s * 1e3, 2)
                         for r in sorted(results, key=lambda r: r.index)],
    }


def probe_dispatch(base_url: str, specs, pool: str, n: int = 20) -> dict:
    """The request path's latency outside the engines, measured: ``n`` sequential
    short requests pinned to ``pool`` on an idle fleet, their client-side TTFT
    less what the simulator gives the same requests with no path at all."""
    spec = RunSpec(label="probe", base_url=base_url, endpoint="completions", headers={PIN_HEADER: pool},
                   load=LoadSpec(arrival="closed", concurrency=1, requests=n),
                   data=DataSpec(prompt_tokens=32, output_tokens=2))
    outcome = asyncio.run(runner.run(spec, progress=False))
    live = [r.ttft_s for r in outcome.results if r.ok and r.ttft_s is not None]
    records = [TraceRecord(t=10.0 * i, model=outcome.results[0].model, prompt_tokens=r.prompt_tokens or 32,
                           output_tokens=2) for i, r in enumerate(outcome.results)]
    alone = [s_ for s_ in specs if s_.name == pool]
    sim = simulate(alone, Workload.from_records(records), {"policy": "least-load"})
    engine_s = (sim.ttft_ms.p50 or 0.0) / 1e3
    median = float(np.median(live)) if live else float("nan")
    return {"pool": pool, "requests": len(live), "ttft_p50_ms": median * 1e3, "engine_ttft_ms": engine_s * 1e3,
            "dispatch_s": max(0.0, median - engine_s)}


def forecast_error_dict(err: PredictorError | None) -> dict | None:
    """Median and p90 relative error of the chosen pool's forecast (None: the policy made none)."""
    if err is None:
        return None
    return {"requests": err.requests, "ttft_p50": err.ttft.p50, "ttft_p90": err.ttft.p90,
            "tpot_p50": err.tpot.p50, "tpot_p90": err.tpot.p90}


def live_forecast_error(recent: list[dict]) -> dict | None:
    """The same from the gateway's ``/v1/requests/recent`` rows of one run."""
    rows = [r for r in recent if r.get("predicted_ttft_ms") is not None]
    if not rows:
        return None
    nan = float("nan")
    obs_tpot = [(r["e2e_ms"] - r["ttft_ms"]) / (r["output_tokens"] - 1) if r["output_tokens"] > 1 else nan
                for r in rows]
    err = PredictorError.of(np.array([r["predicted_ttft_ms"] for r in rows]), np.array([r["ttft_ms"] for r in rows]),
                            np.array([r["predicted_tpot_ms"] for r in rows]), np.array(obs_tpot))
    return forecast_error_dict(err)


def sim_figures(specs, records: list[TraceRecord], routing, *, profiles=None,
                learn: bool = True, dispatch_s: float = 0.0) -> tuple[dict, dict]:
    """The simulator on the same records, in the keys of :data:`TOLERANCES`, and
    the profiles it ended with. Pass those as ``profiles`` to the next run to
    mirror a gateway whose learned profiles outlive a policy switch."""
    w = Workload.from_records(records)
    config = load_routing_config(routing) if isinstance(routing, dict) else routing
    sim = Simulation(w, build_pools(specs, w.models, profiles), config, learn=learn, dispatch_s=dispatch_s).run()
    r = summarize(sim, "sim")
    figures = {
        "requests": r.requests, "completed": r.completed,
        "slo_attainment": r.slo_attainment,
        "slo_attainment_by_class": r.slo_attainment_by_class,
        "j_per_token_attributed": r.j_per_token_attributed,
        "j_per_token_total": r.j_per_token_total,
        "ttft_p50_ms": r.ttft_ms.p50, "ttft_p99_ms": r.ttft_ms.p99,
        "tpot_p50_ms": r.tpot_ms.p50, "tpot_p99_ms": r.tpot_ms.p99,
        "share": {p.name: p.share for p in r.pools},
        "rejected": r.rejected,
        "ttft_ms_each": [None if np.isnan(v) else round(v * 1e3, 2) for v in sim.state.ttft.tolist()],
        "forecast_error": forecast_error_dict(r.predictor_error),
    }
    return figures, {p.name: p.profile for p in sim.pools if p.profile is not None}


def compare(live: dict, sim: dict) -> dict:
    """Per metric: live, sim, the difference (points or sim/live) and whether it is within tolerance."""
    out = {}
    for name, (kind, tol) in TOLERANCES.items():
        a, b = live.get(name), sim.get(name)
        if a is None or b is None:
            diff = None
        else:
            diff = b - a if kind == "points" else (b / a if a else None)
        within = None
        if tol is not None:
            within = diff is not None and (abs(diff) <= tol if kind == "points" else abs(diff - 1) <= tol)
        out[name] = {"live": a, "sim": b, kind if kind == "points" else "ratio": diff, "within": within}
    return out


def markdown_rows(rows: list[dict]) -> list[str]:
    """One table row per (rate, policy): live / sim of each metric."""
    def pair(f: dict, key: str, fmt: str, scale: float = 1.0) -> str:
        c = f[key]
        lv = "–" if c["live"] is None else format(c["live"] * scale, fmt)
        sv = "–" if c["sim"] is None else format(c["sim"] * scale, fmt)
        mark = "" if c["within"] is None else (" ✓" if c["within"] else " ✗")
        return f"{lv} / {sv}{mark}"

    out = ["| rate | policy | SLO % live / sim | J/tok attr live / sim | J/tok total live / sim "
           "| TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | live share |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["fidelity"]
        share = ", ".join(f"{k} {v:.0%}" for k, v in r["live"]["share"].items())
        out.append(f"| {r['rate']:g} | {r['policy']} | {pair(f, 'slo_attainment', '.1f', 100)} "
                   f"| {pair(f, 'j_per_token_attributed', '.3f')} | {pair(f, 'j_per_token_total', '.3f')} "
                   f"| {pair(f, 'ttft_p50_ms', '.0f')} | {pair(f, 'ttft_p99_ms', '.0f')} "
                   f"| {pair(f, 'tpot_p50_ms', '.1f')} | {share} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--trace", required=True)
    p.add_argument("--fleet", help="the fleet the gateway runs (default: the embedded default)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--out", help="folder for fidelity.json")
    args = p.parse_args(argv)

    records = list(islice(read_trace(args.trace), args.requests))
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        write_trace(trace, records)
        spec = RunSpec(label="fidelity", base_url=args.base_url, endpoint="completions",
                       load=LoadSpec(arrival="trace", requests=len(records)),
                       data=DataSpec(dataset="trace", trace=str(trace)))
        live = live_figures(asyncio.run(runner.run(spec, progress=False)))
    fleet, _ = load_fleet(args.fleet)
    sim, _ = sim_figures(fleet.pools, records, fleet.routing)
    report = compare(live, sim)
    ok = all(c["within"] is not False for c in report.values())
    print(f"{'metric':<24}{'live':>12}{'sim':>12}{'diff':>10}")
    for name, c in report.items():
        diff = c.get("points", c.get("ratio"))
        print(f"{name:<24}{_num(c['live']):>12.4g}{_num(c['sim']):>12.4g}{_num(diff):>10.3f}"
              f"{'' if c['within'] is None else ('  ok' if c['within'] else '  MISS')}")
    print(f"live: {live['completed']}/{live['requests']} ok; sim: {sim['completed']}/{sim['requests']} completed")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fidelity.json").write_text(json.dumps({"live": live, "sim": sim, "compare": report}, indent=1) + "\n")
    return 0 if ok else 1


def _num(v: float | None) -> float:
    return float("nan") if v is None else v


if __name__ == "__main__":
    sys.exit(main())
