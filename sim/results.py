"""What one simulated run comes to: energy, cost, latency, SLOs, per-pool shares.

Energy has the two totals of the design notes: *attributed* (above idle, what
routing controls) and *total* (the attributed energy plus every simulated
replica's idle draw while it is up: the whole span for a fixed pool, the
replica-seconds each replica was starting, serving or draining where pools
autoscale). The span runs from the first arrival to the
last event. Goodput follows ``loadtests.metrics``: a request is good when it
completed and met each of its TTFT and TPOT targets (TPOT passes for a
one-token output); goodput is good requests per second of span.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sim.simulation import Simulation
from sim.state import INFEASIBLE, NOT_SERVED, OK, SATURATED


@dataclass(frozen=True)
class Percentiles:
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @classmethod
    def of_ms(cls, seconds: np.ndarray) -> "Percentiles":
        if not len(seconds):
            return cls()
        p50, p90, p99 = np.percentile(seconds * 1e3, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99))


@dataclass(frozen=True)
class PredictorError:
    """Relative error ``|predicted - observed| / observed`` of the chosen pool's
    forecast over completed requests (TPOT: those with 2+ output tokens)."""

    requests: int
    ttft: Percentiles  # of the relative error, not ms
    tpot: Percentiles

    @classmethod
    def of(cls, predicted: np.ndarray, observed: np.ndarray, pred_tpot: np.ndarray,
           obs_tpot: np.ndarray) -> "PredictorError | None":
        has = ~np.isnan(predicted)
        if not has.any():
            return None
        t = np.abs(predicted[has] - observed[has]) / np.maximum(observed[has], 1e-9)
        has2 = ~np.isnan(pred_tpot) & ~np.isnan(obs_tpot)
        u = np.abs(pred_tpot[has2] - obs_tpot[has2]) / np.maximum(obs_tpot[has2], 1e-9)
        return cls(int(has.sum()), _rel(t), _rel(u))


def _rel(errors: np.ndarray) -> Percentiles:
    if not len(errors):
        return Percentiles()
    p50, p90, p99 = np.percentile(errors, [50, 90, 99])
    return Percentiles(float(p50), float(p90), float(p99))


@dataclass(frozen=True)
class PoolResult:
    name: str
    hardware: str
    requests: int
    share: float  # of completed + running requests routed
    output_tokens: int
    mean_load: float  # sequences in flight, time-averaged
    busy_share: float  # of replica time spent stepping
    energy_attributed_j: float
    energy_total_j: float  # idle over the span + attributed
    cost_usd: float  # price per hour × replica-hours up
    mean_replicas: float = 0.0  # replicas up (starting, serving, draining), time-averaged


@dataclass(frozen=True)
class RunResult:
    label: str
    routing: dict  # the routing config, as YAML would hold it
    requests: int
    completed: int
    rejected: dict[str, int]
    span_s: float
    output_tokens: int
    throughput_tok_s: float
    j_per_token_attributed: float | None
    j_per_token_total: float | None
    usd_per_mtok: float | None
    ttft_ms: Percentiles
    tpot_ms: Percentiles
    e2e_ms: Percentiles
    slo_attainment: float  # good / all requests (a rejection is a miss)
    goodput_rps: float
    pools: list[PoolResult] = field(default_factory=list)
    wall_s: float = 0.0
    oracle_ratio: float | None = None  # attributed J/token over the oracle's bound
    oracle_ratio_capped: float | None = None  # over the bound capped by the batches arrivals can fill
    predictor_error: PredictorError | None = None  # None: the policy made no forecasts
    # SLO attainment per class of requests sharing targets, keyed "TTFT/TPOT" in ms ("-": none)
    slo_attainment_by_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(sim: Simulation, label: str | None = None) -> RunResult:
    """Summarise a finished simulation."""
    st = sim.state
    w, status = st.workload, st.status
    ok = status == OK
    start = float(w.t[0]) if len(w) else 0.0
    end = max(sim.now(), start)
    span = end - start
    tokens = int(w.output[ok].sum())
    ttft, e2e, out = st.ttft[ok], st.e2e[ok], w.output[ok]
    multi = out > 1
    tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1)
    tpot_all = np.zeros(len(out))  # a one-token output has no TPOT: it passes
    tpot_all[multi] = tpot
    obs_tpot = np.full(len(out), np.nan)
    obs_tpot[multi] = tpot
    slo_ttft, slo_tpot = w.slo_ttft_ms[ok], w.slo_tpot_ms[ok]
    good = ((np.isnan(slo_ttft) | (ttft * 1e3 <= slo_ttft))
            & (np.isnan(slo_tpot) | (tpot_all * 1e3 <= slo_tpot)))
    n_good = int(good.sum())
    good_all = np.zeros(len(w), dtype=bool)
    good_all[ok] = good
    pools = []
    total_attr = total_all = total_cost = 0.0
    routed = max(int((st.pool >= 0).sum()), 1)
    for p in sim.pools:
        up_s = p.replica_seconds(start, end)
        energy_total = p.attributed_j + p.idle_watts * up_s
        cost = p.price_per_hour * up_s / 3600
        total_attr += p.attributed_j
        total_all += energy_total
        total_cost += cost
        pools.append(PoolResult(
            p.name, p.spec.hardware, p.requests, p.requests / routed, p.output_tokens,
            p.mean_load(start, end), p.busy_s / up_s if up_s > 0 else 0.0,
            p.attributed_j, energy_total, cost, up_s / span if span > 0 else float(len(p.replicas)),
        ))
    return RunResult(
        label=label or sim.config.policy,
        routing=sim.config.model_dump(exclude_defaults=True),
        requests=len(w),
        completed=int(ok.sum()),
        rejected={name: int((status == code).sum()) for code, name in
                  ((SATURATED, "saturated"), (INFEASIBLE, "infeasible"), (NOT_SERVED, "not_served"))},
        span_s=span,
        output_tokens=tokens,
        throughput_tok_s=tokens / span if span > 0 else 0.0,
        j_per_token_attributed=total_attr / tokens if tokens else None,
        j_per_token_total=total_all / tokens if tokens else None,
        usd_per_mtok=None if not tokens else total_cost / tokens * 1e6,
        ttft_ms=Percentiles.of_ms(ttft),
        tpot_ms=Percentiles.of_ms(tpot),
        e2e_ms=Percentiles.of_ms(e2e),
        slo_attainment=n_good / len(w) if len(w) else 0.0,
        goodput_rps=n_good / span if span > 0 else 0.0,
        pools=pools,
        wall_s=sim.wall_s,
        predictor_error=PredictorError.of(st.pred_ttft[ok], ttft, st.pred_tpot[ok], obs_tpot),
        slo_attainment_by_class=by_class(w.slo_ttft_ms, w.slo_tpot_ms, good_all),
    )


def by_class(slo_ttft_ms: np.ndarray, slo_tpot_ms: np.ndarray, good: np.ndarray) -> dict[str, float]:
    """Share of ``good`` requests per class of equal targets, keyed "TTFT/TPOT" ms, tightest first."""
    ttft = np.nan_to_num(slo_ttft_ms, nan=np.inf)
    tpot = np.nan_to_num(slo_tpot_ms, nan=np.inf)
    out = {}
    for a, b in sorted(set(zip(ttft.tolist(), tpot.tolist()))):
        sel = (ttft == a) & (tpot == b)
        out["/".join("-" if math.isinf(v) else f"{v:g}" for v in (a, b))] = float(good[sel].mean())
    return out
