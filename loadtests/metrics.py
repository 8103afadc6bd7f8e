"""Summary statistics of a run.

Latency statistics cover successful requests only. ITL pools every gap
between content chunks of every request (as vLLM's ``bench serve`` does);
TPOT is one value per request, ``(e2e - ttft) / (output_tokens - 1)``.

Goodput rule: a request is *good* when it succeeded and meets every target
that applies to it. A request's own TTFT/TPOT target (from the trace) wins
over the run's; E2E has only a run-wide target; a metric with no target passes; TPOT passes for a one-token output
(it has none). Goodput is good requests per second of run time; the share
within targets is good requests over all requests sent, failures included
(docs/loadtest.md, "SLO accounting").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from loadtests.fleet import EnergyReport
from loadtests.lag import ClientLag, judge
from loadtests.result import RequestResult

UNKNOWN_POOL = "(none)"


class Stats(BaseModel):
    """Distribution of one latency, in milliseconds."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @classmethod
    def of_seconds(cls, values: Sequence[float]) -> "Stats":
        if not len(values):
            return cls()
        ms = np.asarray(values, dtype=float) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(count=len(ms), mean=float(ms.mean()), p50=float(p50), p90=float(p90), p99=float(p99))


class Targets(BaseModel):
    """Run-wide latency targets (ms); None means no target. A misspelt key is an error, not no target."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


class PoolShare(BaseModel):
    requests: int
    share: float
    output_tokens: int


class Summary(BaseModel):
    requests: int
    ok: int
    failed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    prompt_tokens: int
    output_tokens: int
    ttft_ms: Stats
    tpot_ms: Stats
    itl_ms: Stats
    e2e_ms: Stats
    dispatch_lag_ms: Stats
    client_loop_lag_ms: Stats = Stats()  # how late the client's event loop woke (loadtests.lag)
    client_lag: ClientLag | None = None  # was the run client-bound, and by how much
    targets: Targets
    good: int
    goodput: float
    within_targets: float  # good / requests: a failed request is one that missed its targets
    errors: dict[str, int]
    pools: dict[str, PoolShare]
    energy: EnergyReport | None = None
    energy_note: str | None = None


def is_good(result: RequestResult, targets: Targets) -> bool:
    """The goodput rule for one request (see the module docstring)."""
    if not result.ok:
        return False
    checks = (
        (result.ttft_s, _first(result.slo_ttft_ms, targets.ttft_ms)),
        (result.tpot_s, _first(result.slo_tpot_ms, targets.tpot_ms)),
        (result.e2e_s, targets.e2e_ms),
    )
    return all(target is None or value is None or value * 1000.0 <= target for value, target in checks)


def _first(own: float | None, run: float | None) -> float | None:
    return run if own is None else own


def run_duration(results: Sequence[RequestResult]) -> float:
    """From the first send to the last completion."""
    if not results:
        return 0.0
    first = min(r.sent_s for r in results)
    last = max(r.sent_s + (r.e2e_s or 0.0) for r in results)
    return last - first


def summarize(
    results: Sequence[RequestResult],
    targets: Targets | None = None,
    duration_s: float | None = None,
    energy: EnergyReport | None = None,
    energy_note: str | None = None,
    client_lag_s: Sequence[float] | None = None,
) -> Summary:
    """``client_lag_s``: the loop probe's samples (:class:`loadtests.lag.LoopLagProbe`), when one ran."""
    targets = targets or Targets()
    duration = run_duration(results) if duration_s is None else duration_s
    ok = [r for r in results if r.ok]
    prompt_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    good = sum(is_good(r, targets) for r in ok)
    ttft, itl = Stats.of_seconds([r.ttft_s for r in ok]), Stats.of_seconds([gap for r in ok for gap in r.itl_s])
    dispatch = Stats.of_seconds([r.dispatch_lag_s for r in results if r.scheduled_s is not None])
    loop_lag = Stats.of_seconds(client_lag_s or [])
    return Summary(
        requests=len(results),
        ok=len(ok),
        failed=len(results) - len(ok),
        duration_s=duration,
        request_throughput=_rate(len(ok), duration),
        output_throughput=_rate(output_tokens, duration),
        total_token_throughput=_rate(prompt_tokens + output_tokens, duration),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_ms=ttft,
        tpot_ms=Stats.of_seconds([r.tpot_s for r in ok if r.tpot_s is not None]),
        itl_ms=itl,
        e2e_ms=Stats.of_seconds([r.e2e_s for r in ok]),
        dispatch_lag_ms=dispatch,
        client_loop_lag_ms=loop_lag,
        client_lag=None if client_lag_s is None else judge(loop_lag.p90, dispatch.p90, ttft.p50, itl.p50),
        targets=targets,
        good=good,
        goodput=_rate(good, duration),
        within_targets=good / len(results) if results else 0.0,
        errors=dict(Counter(r.error_type for r in results if not r.ok).most_common()),
        pools=_pool_shares(ok),
        energy=energy,
        energy_note=energy_note,
    )


def _pool_shares(ok: Sequence[RequestResult]) -> dict[str, PoolShare]:
    counts = Counter(r.pool or UNKNOWN_POOL for r in ok)
    tokens: Counter[str] = Counter()
    for r in ok:
        tokens[r.pool or UNKNOWN_POOL] += r.output_tokens
    return {
        name: PoolShare(requests=n, share=n / len(ok), output_tokens=tokens[name])
        for name, n in sorted(counts.items())
    }


def _rate(count: float, duration: float) -> float:
    return count / duration if duration > 0 else 0.0
