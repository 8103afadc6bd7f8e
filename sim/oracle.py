"""An offline lower bound on the attributed joules per output token of a trace.

A linear program (SciPy's HiGHS) over pools × request classes × time windows.
Classes group requests by model, sequence-length bucket and latency targets
(TTFT and TPOT, each request's own); ``x[p, c, w]`` is the output tokens of
class ``c`` pool ``p`` serves in window ``w``.

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

``concurrency=True`` tightens it for work-conserving engines (every running
sequence decodes every step, as continuous batching does): a batch needs that
many sequences in the system at once, and by Little's law a pool can hold at
most ``Σ_c λ[c, w] · (ttft_c + n_c · tpot_p(b))`` of them in window ``w``
(arrival rate × the longest a sequence of the class can stay: its TTFT
target of queueing plus its decode at that batch's step time). So ``e`` is
taken per window over the batches that cap allows; at light load that is far
above the global best. Arrival rates are per window (a burst inside a window
is averaged), so this is an estimate of what such a fleet can reach, not a
strict bound.
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
    concurrency: bool = False  # capped by the concurrency arrivals allow (see the module doc)


def solve_bound(demand: np.ndarray, energy: np.ndarray, capacity: np.ndarray,
                window_s: float, lag: int = 1) -> tuple[float, float, np.ndarray]:
    """Solve the LP for ``demand[c, w]`` tokens arriving, ``energy[p, c]`` J/token
    (inf: not allowed; or ``energy[p, c, w]`` per arrival window) and
    ``capacity[p, c]`` tokens/s. Returns (joules, tokens served, ``x[p, c, w]``
    over ``w + lag`` windows)."""
    P, C = energy.shape[:2]
    W = demand.shape[1] + lag
    nx = P * C * W
    arrived = np.cumsum(np.pad(demand, ((0, 0), (0, lag))), axis=1)
    if energy.ndim == 2:
        energy = np.repeat(energy[:, :, None], W, axis=2)
    else:  # windows past the arrivals keep the last window's figures
        energy = np.concatenate([energy, np.repeat(energy[:, :, -1:], W - energy.shape[2], axis=2)], axis=2)
    finite = np.isfinite(energy) & (capacity > 0)[:, :, None]
    allowed = finite.any(axis=2)
    big = 1e3 * max(float(energy[finite].max()) if finite.any() else 1.0, 1.0)
    cost = np.concatenate([np.where(finite, energy, 0.0).ravel(), np.full(C, big)])
    bounds = [(0, None if ok else 0) for ok in finite.ravel()]
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
                 lag: int = 1, concurrency: bool = False) -> OracleBound:
    """The bound for ``workload`` on the pools of ``specs`` that serve its models
    and have a hardware model. Default windows: a 50th of the span, at least 5 s.
    ``concurrency`` caps each window's batches by what its arrivals can fill."""
    w = workload
    pools = [(s, f) for s in specs if set(s.models) & set(w.models) and (f := engine_figures(s))]
    span = w.span_s
    window_s = window_s or max(span / 50, 5.0)
    n_win = int(span // window_s) + 1
    win = ((w.t - w.t[0]) // window_s).astype(int)
    seq = np.array([bucket_index(DEFAULT_SEQ_BUCKETS, int(n)) for n in w.prompt + w.output])
    ttft_key, tpot_key = _no_target_inf(w.slo_ttft_ms), _no_target_inf(w.slo_tpot_ms)
    keys = sorted(set(zip(w.model.tolist(), seq.tolist(), ttft_key.tolist(), tpot_key.tolist())))
    P, C = len(pools), len(keys)
    energy = np.full((P, C, n_win), np.inf)
    capacity = np.zeros((P, C))
    demand = np.zeros((C, n_win))
    arrivals = np.zeros((C, n_win))
    figures = []
    for c, (m, s, ttft, tpot) in enumerate(keys):
        sel = (w.model == m) & (seq == s) & (ttft_key == ttft) & (tpot_key == tpot)
        np.add.at(demand[c], win[sel], w.output[sel])
        np.add.at(arrivals[c], win[sel], 1)
        prompt, output = int(w.prompt[sel].mean()), int(w.output[sel].mean())
        longest = int((w.prompt[sel] + w.output[sel]).max())
        figures.append((prompt, output, longest, ttft, tpot))
    # Little's law per window: sequences in the system ≤ queue + decode = wait_s + per_step_s × step time
    rate = arrivals / window_s
    ttft_s = np.array([f[3] for f in figures]) / 1e3
    wait_s = np.where(rate > 0, rate * np.where(np.isfinite(ttft_s), ttft_s, 0.0)[:, None], 0.0).sum(axis=0)
    if np.isinf(ttft_s).any():
        wait_s = np.where(rate[np.isinf(ttft_s)].sum(axis=0) > 0, np.inf, wait_s)
    per_step_s = (rate * np.array([f[1] for f in figures])[:, None]).sum(axis=0)
    for c, (m, *_) in enumerate(keys):
        prompt, output, longest, ttft, tpot = figures[c]
        for p, (spec, f) in enumerate(pools):
            if w.models[m] not in spec.models or longest > f.max_model_len:
                continue
            for b in batch_ladder(f.max_batch):
                op = operating_point(f.hardware, f.model, b, prompt, output, f.max_batch)
                if op is None or op.ttft_s * 1e3 > ttft or op.tpot_s * 1e3 > tpot:
                    continue
                fits = (b <= np.maximum(1.0, wait_s + per_step_s * op.tpot_s)) if concurrency else True
                energy[p, c] = np.where(fits, np.minimum(energy[p, c], op.attributed_j_per_token), energy[p, c])
                capacity[p, c] = max(capacity[p, c], op.throughput_tok_s * spec.replicas)
    runnable = np.isfinite(energy).any(axis=(0, 2))
    total_tokens = float(demand[runnable].sum())
    if not total_tokens:
        return OracleBound(None, None, 0.0, window_s, n_win, C, "no pool can run any request")
    joules, served, _ = solve_bound(demand[runnable], energy[:, runnable], capacity[:, runnable],
                                    window_s, lag)
    idle = sum(f.hardware.idle_watts_replica * s.replicas for s, f in pools) * span
    return OracleBound(
        joules / served if served else None,
        (joules + idle) / served if served else None,
        served / total_tokens, window_s, n_win + lag, int(runnable.sum()), "optimal", concurrency,
    )


def _no_target_inf(targets: np.ndarray) -> np.ndarray:
    """Targets in ms with "none" (NaN) as infinite, so they group and compare."""
    return np.where(np.isnan(targets), math.inf, targets)
