"""An offline lower bound on the attributed joules per output token of a trace.

A linear program (SciPy's HiGHS) over pools × request classes × time windows.
Classes group requests by model and sequence-length bucket; ``x[p, c, w]`` is
the output tokens of class ``c`` pool ``p`` serves in window ``w``.

    minimise   Σ e[p, c] · x[p, c, w]                      (+ M · unserved)
    subject to Σ_c x[p, c, w] / r[p, c] ≤ Δ                 (pool time per window)
               served_c(≤ w) ≤ arrived_c(≤ w)               (nothing before it arrives)
               served_c(≤ w) ≥ arrived_c(≤ w - lag)         (served within ``lag`` windows)

``e[p, c]`` is the least attributed J/token and ``r[p, c]`` the most tokens/s
(all replicas) over every batch whose steady state (``operating_point``) meets
the class's TTFT/TPOT targets, relaxed independently: a pool may run any mix
at its best efficiency and its best speed at once, ignoring queueing,
prefill interference and how much concurrent load it really has. So the
value is a bound, not a schedule; no router can beat it under the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from routing.buckets import DEFAULT_SEQ_BUCKETS, bucket_index
from fleet.profiles import batch_ladder, engine_figures, operating_point
from sim.workload import Workload
from workers.spec import PoolSpec


@dataclass(frozen=True)
class OracleBound:
    j_per_token_attributed: float | None  # the bound
    j_per_token_total: float | None  # the bound plus every pool's idle draw over the arrival span
    served_share: float  # of the output tokens some pool can run (< 1: the fleet is too small)
    window_s: float
    windows: int
    classes: int
    status: str


def solve_bound(demand: np.ndarray, energy: np.ndarray, capacity: np.ndarray,
                window_s: float, lag: int = 1) -> tuple[float, float, np.ndarray]:
    """Solve the LP for ``demand[c, w]`` tokens arriving, ``energy[p, c]`` J/token
    (inf: not allowed) and ``capacity[p, c]`` tokens/s. Returns (joules,
    tokens served, ``x[p, c, w]`` over ``w + lag`` windows)."""
    P, C = energy.shape
    W = demand.shape[1] + lag
    nx = P * C * W
    arrived = np.cumsum(np.pad(demand, ((0, 0), (0, lag))), axis=1)
    allowed = np.isfinite(energy) & (capacity > 0)
    big = 1e3 * max(float(energy[allowed].max()) if allowed.any() else 1.0, 1.0)
    cost = np.concatenate([np.repeat(np.where(allowed, energy, 0.0).ravel(), W), np.full(C, big)])
    bounds = [(0, None if allowed[p, c] else 0) for p in range(P) for c in range(C) for _ in range(W)]
    bounds += [(0, None)] * C
    rows, cols, vals, rhs = [], [], [], []

    def xi(p: int, c: int, w: int) -> int:
        return (p * C + c) * W + w

    def add(entries: list[tuple[int, float]], bound: float) -> None:
        for col, v in entries:
            rows.append(len(rhs))
            cols.append(col)
            vals.append(v)
        rhs.append(bound)

    for p in range(P):
        for w in range(W):
            add([(xi(p, c, w), 1.0 / capacity[p, c]) for c in range(C) if allowed[p, c]], window_s)
    for c in range(C):
        for w in range(W):
            served = [(xi(p, c, v), 1.0) for p in range(P) if allowed[p, c] for v in range(w + 1)]
            add(served, arrived[c, w])
            if w >= lag:
                add([(i, -1.0) for i, _ in served] + [(nx + c, -1.0)], -arrived[c, w - lag])
    a_ub = coo_matrix((vals, (rows, cols)), shape=(len(rhs), nx + C)).tocsr()
    res = linprog(cost, A_ub=a_ub, b_ub=rhs, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"oracle LP failed: {res.message}")
    x = res.x[:nx].reshape(P, C, W)
    return float(cost[:nx] @ res.x[:nx]), float(x.sum()), x


def oracle_bound(specs: list[PoolSpec], workload: Workload, *, window_s: float | None = None,
                 lag: int = 1) -> OracleBound:
    """The bound for ``workload`` on the pools of ``specs`` that serve its models
    and have a hardware model. Default windows: a 50th of the span, at least 5 s."""
    w = workload
    pools = [(s, f) for s in specs if set(s.models) & set(w.models) and (f := engine_figures(s))]
    span = w.span_s
    window_s = window_s or max(span / 50, 5.0)
    n_win = int(span // window_s) + 1
    win = ((w.t - w.t[0]) // window_s).astype(int)
    seq = np.array([bucket_index(DEFAULT_SEQ_BUCKETS, int(n)) for n in w.prompt + w.output])
    keys = sorted(set(zip(w.model.tolist(), seq.tolist())))
    P, C = len(pools), len(keys)
    energy = np.full((P, C), np.inf)
    capacity = np.zeros((P, C))
    demand = np.zeros((C, n_win))
    for c, (m, s) in enumerate(keys):
        sel = (w.model == m) & (seq == s)
        np.add.at(demand[c], win[sel], w.output[sel])
        prompt, output = int(w.prompt[sel].mean()), int(w.output[sel].mean())
        longest = int((w.prompt[sel] + w.output[sel]).max())
        ttft, tpot = _loosest(w.slo_ttft_ms[sel]), _loosest(w.slo_tpot_ms[sel])
        for p, (spec, f) in enumerate(pools):
            if w.models[m] not in spec.models or longest > f.max_model_len:
                continue
            for b in batch_ladder(f.max_batch):
                op = operating_point(f.hardware, f.model, b, prompt, output, f.max_batch)
                if op is None or op.ttft_s * 1e3 > ttft or op.tpot_s * 1e3 > tpot:
                    continue
                energy[p, c] = min(energy[p, c], op.attributed_j_per_token)
                capacity[p, c] = max(capacity[p, c], op.throughput_tok_s * spec.replicas)
    runnable = np.isfinite(energy).any(axis=0)
    total_tokens = float(demand[runnable].sum())
    if not total_tokens:
        return OracleBound(None, None, 0.0, window_s, n_win, C, "no pool can run any request")
    joules, served, _ = solve_bound(demand[runnable], energy[:, runnable], capacity[:, runnable],
                                    window_s, lag)
    idle = sum(f.hardware.idle_watts_replica * s.replicas for s, f in pools) * span
    return OracleBound(
        joules / served if served else None,
        (joules + idle) / served if served else None,
        served / total_tokens, window_s, n_win + lag, int(runnable.sum()), "optimal",
    )


def _loosest(targets: np.ndarray) -> float:
    """The loosest target in a class (no target at all counts as infinite)."""
    return math.inf if np.isnan(targets).any() else float(targets.max())
