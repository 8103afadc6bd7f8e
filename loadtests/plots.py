"""Report figures as base64 PNG, drawn without pyplot (no global state, Agg canvas)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from matplotlib.figure import Figure

from loadtests.metrics import UNKNOWN_POOL, Summary
from loadtests.result import RequestResult


def latency_histograms(results: Sequence[RequestResult]) -> str | None:
    ok = [r for r in results if r.ok]
    if not ok:
        return None
    series = {
        "TTFT (ms)": [r.ttft_s * 1000 for r in ok],
        "TPOT (ms)": [r.tpot_s * 1000 for r in ok if r.tpot_s is not None],
        "E2E latency (ms)": [r.e2e_s * 1000 for r in ok],
    }
    fig = Figure(figsize=(12, 3.2))
    for ax, (name, values) in zip(fig.subplots(1, 3), series.items()):
        if values:
            ax.hist(values, bins=min(50, max(5, len(values) // 5)), color="#4c72b0")
        ax.set_xlabel(name)
        ax.set_ylabel("requests")
    return _png(fig)


def ttft_timeline(results: Sequence[RequestResult]) -> str | None:
    """TTFT against send time, one colour per pool: which hardware served what, when."""
    ok = [r for r in results if r.ok]
    if not ok:
        return None
    fig = Figure(figsize=(12, 3.2))
    ax = fig.subplots()
    for pool in sorted({r.pool or UNKNOWN_POOL for r in ok}):
        mine = [r for r in ok if (r.pool or UNKNOWN_POOL) == pool]
        ax.scatter([r.sent_s for r in mine], [r.ttft_s * 1000 for r in mine], s=6, label=pool)
    ax.set_xlabel("send time (s)")
    ax.set_ylabel("TTFT (ms)")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def pool_shares(summary: Summary) -> str | None:
    """Share of requests per pool and, when measured, energy per pool."""
    if not summary.pools:
        return None
    energy = summary.energy
    fig = Figure(figsize=(12, 3.2))
    left, right = fig.subplots(1, 2)
    names = list(summary.pools)
    left.bar(names, [summary.pools[n].share * 100 for n in names], color="#55a868")
    left.set_ylabel("share of requests (%)")
    if energy and energy.pools:
        pools = [p.name for p in energy.pools]
        x = range(len(pools))
        right.bar([i - 0.2 for i in x], [p.energy_joules for p in energy.pools], 0.4, label="attributed")
        right.bar([i + 0.2 for i in x], [p.energy_total_joules for p in energy.pools], 0.4, label="incl. idle")
        right.set_xticks(list(x), pools)
        right.set_ylabel("energy during run (J)")
        right.legend(fontsize="small")
    else:
        right.text(0.5, 0.5, "no energy figures", ha="center", va="center")
        right.set_axis_off()
    return _png(fig)


def sweep_curves(rates: Sequence[float], summaries: Sequence[Summary]) -> str | None:
    """Achieved throughput and latency against offered rate."""
    if not summaries:
        return None
    fig = Figure(figsize=(12, 3.2))
    thr, ttft, tpot = fig.subplots(1, 3)
    thr.plot(rates, [s.request_throughput for s in summaries], "o-", label="achieved")
    thr.plot(rates, rates, ":", color="grey", label="offered")
    thr.set_xlabel("offered rate (req/s)")
    thr.set_ylabel("throughput (req/s)")
    thr.legend(fontsize="small")
    for ax, name, key in ((ttft, "TTFT (ms)", "ttft_ms"), (tpot, "TPOT (ms)", "tpot_ms")):
        for pct in ("p50", "p99"):
            ax.plot(rates, [getattr(getattr(s, key), pct) for s in summaries], "o-", label=pct)
        ax.set_xlabel("offered rate (req/s)")
        ax.set_ylabel(name)
        ax.legend(fontsize="small")
    return _png(fig)


def _png(fig: Figure) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
