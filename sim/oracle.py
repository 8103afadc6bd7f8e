"""An offline lower bound on the attributed joules per output token of a trace.

A linear program (SciPy's HiGHS) over pools × request classes × time windows.
Classes group requests by model, sequence-length bucket and latency targets
(TTFT and TPOT, each request's own); ``x[p, c, w]`` is the output tokens of
class ``c`` pool ``p`` serves in window ``w``.

    minimise   Σ e[p, c] · x[p, c, w]                      (+ M · unserved)
    subject to Σ_c x[p, c, w] / r[p, c] ≤ Δ                 (pool time per window)
               served_c(≤ w) ≤ arrived_c(≤ w)               (nothing before it arrives)
               served_c(≤ w) ≥ arrived_c(≤ w - lag_c)       (served by the class's deadline)

``lag_c`` is the class's deadline, its TTFT target plus its longest output at
its TPOT target, in whole windows (rounded up, so the window a request
arrives in never shortens it); a class missing either target may wait until
the trace's end, a short free lag and the time the fleet needs for every
token have passed. ``e[p, c]`` is the least attributed J/token
and ``r[p, c]`` the most tokens/s (all replicas) over every batch whose
steady state (``operating_point``) meets the class's TTFT/TPOT targets,
relaxed independently: a pool may run any mix at its best efficiency and its
best speed at once, ignoring queueing, prefill interference and how much
concurrent load it really has. So the value is a bound, not a schedule; no
router that meets every target can beat it under the model.

``concurrency=True`` tightens it for work-conserving engines (every running
sequence decodes every step, as continuous batching does): a batch of ``b``
needs ``b`` sequences of its model in the system at once. A sequence that meets its
targets is in the system from its arrival until at most its TTFT target plus
its output at the batch's step time, so ``e`` is taken per window over the
batches no larger than the sequences whose stay can overlap that window. A
sequence's step time can change over its stay, so this is an estimate of what
such a fleet can reach, not a strict bound.
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

    def ratio(self, j_per_token_attributed: float | None) -> float | None:
        """A run's attributed J/token over the bound (None where either is missing)."""
        b = self.j_per_token_attributed
        return j_per_token_attributed / b if b and j_per_token_attributed else None


def solve_bound(demand: np.ndarray, energy: np.ndarray, capacity: np.ndarray,
                window_s: float, lag: int | np.ndarray = 1) -> tuple[float, float, np.ndarray]:
    """Solve the LP for ``demand[c, w]`` tokens arriving, ``energy[p, c]`` J/token
    (inf: not allowed; or ``energy[p, c, w]`` per window served in, the last
    one's figures repeated past those given),
    ``capacity[p, c]`` tokens/s and ``lag`` windows to serve them in (one for
    every class, or ``lag[c]``). Returns (joules, tokens served, ``x[p, c, w]``
    over ``w + max(lag)`` windows).

    Served tokens are carried as cumulative variables ``s[c, w]`` (one equality
    per class and window), so every constraint row stays short however many
    windows there are."""
    P, C = energy.shape[:2]
    lags = np.broadcast_to(np.asarray(lag, dtype=int), (C,))
    W = demand.shape[1] + int(lags.max())
    nx, ns = P * C * W, C * W
    arrived = np.cumsum(np.pad(demand, ((0, 0), (0, W - demand.shape[1]))), axis=1)
    if energy.ndim == 2:
        energy = np.repeat(energy[:, :, None], W, axis=2)
    elif energy.shape[2] >= W:
        energy = energy[:, :, :W]
    else:  # windows past those given keep the last one's figures
        energy = np.concatenate([energy, np.repeat(energy[:, :, -1:], W - energy.shape[2], axis=2)], axis=2)
    finite = np.isfinite(energy) & (capacity > 0)[:, :, None]
    big = 1e3 * max(float(energy[finite].max()) if finite.any() else 1.0, 1.0)
    cost = np.concatenate([np.where(finite, energy, 0.0).ravel(), np.zeros(ns), np.full(C, big)])
    bounds = ([(0, None if ok else 0) for ok in finite.ravel()]
              + [(0, a) for a in arrived.ravel()]  # nothing served before it arrives
              + [(0, None)] * C)
    p_idx, c_idx, w_idx = np.meshgrid(np.arange(P), np.arange(C), np.arange(W), indexing="ij")
    x_col = ((p_idx * C + c_idx) * W + w_idx).ravel()
    ok = finite.ravel()

    def s_col(c, w):
        return nx + c * W + w

    # Pool time per window: Σ_c x[p, c, w] / r[p, c] ≤ Δ.
    rate = np.where(capacity > 0, capacity, 1.0)
    ub_rows = [(p_idx * W + w_idx).ravel()[ok]]
    ub_cols = [x_col[ok]]
    ub_vals = [(1.0 / rate[p_idx, c_idx]).ravel()[ok]]
    ub_rhs = [np.full(P * W, window_s)]
    # Served within the lag: s[c, w] + u[c] ≥ arrived[c, w - lag[c]].
    late_c, late_w = np.nonzero(np.arange(W)[None, :] >= lags[:, None])
    n_late = len(late_c)
    ub_rows += [P * W + np.arange(n_late)] * 2
    ub_cols += [s_col(late_c, late_w), nx + ns + late_c]
    ub_vals += [np.full(n_late, -1.0)] * 2
    ub_rhs.append(-arrived[late_c, late_w - lags[late_c]])
    a_ub = coo_matrix((np.concatenate(ub_vals), (np.concatenate(ub_rows), np.concatenate(ub_cols))),
                      shape=(P * W + n_late, nx + ns + C)).tocsr()
    # Cumulative served: s[c, w] - s[c, w - 1] - Σ_p x[p, c, w] = 0.
    eq_c, eq_w = np.divmod(np.arange(ns), W)
    prev = eq_w > 0
    eq_rows = [np.arange(ns), np.arange(ns)[prev], (c_idx * W + w_idx).ravel()[ok]]
    eq_cols = [s_col(eq_c, eq_w), s_col(eq_c[prev], eq_w[prev] - 1), x_col[ok]]
    eq_vals = [np.ones(ns), -np.ones(int(prev.sum())), -np.ones(int(ok.sum()))]
    a_eq = coo_matrix((np.concatenate(eq_vals), (np.concatenate(eq_rows), np.concatenate(eq_cols))),
                      shape=(ns, nx + ns + C)).tocsr()
    res = linprog(cost, A_ub=a_ub, b_ub=np.concatenate(ub_rhs), A_eq=a_eq, b_eq=np.zeros(ns),
                  bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"oracle LP failed: {res.message}")
    x = res.x[:nx].reshape(P, C, W)
    return float(cost[:nx] @ res.x[:nx]), float(x.sum()), x


def oracle_bound(specs: list[PoolSpec], workload: Workload, *, window_s: float | None = None,
                 free_lag_s: float | None = None, concurrency: bool = False) -> OracleBound:
    """The bound for ``workload`` on the pools of ``specs`` that serve its models
    and have a hardware model. Each class is served by its deadline (its TTFT
    target plus its longest output at its TPOT target) rounded up to whole
    windows; a class without both targets by the end of the trace plus
    ``free_lag_s`` (default: a 50th of the span, at least 5 s) plus the time
    the whole fleet needs for every token. Default windows: 0.5 s, or a
    1,000th of the span if longer.
    ``concurrency`` caps each window's batches by the sequences of the same
    model that can be in the system then."""
    w = workload
    pools = [(s, f) for s in specs if set(s.models) & set(w.models) and (f := engine_figures(s))]
    span = w.span_s
    window_s = max(span / 1000, 0.5) if window_s is None else window_s
    free_lag_s = max(span / 50, 5.0) if free_lag_s is None else free_lag_s
    n_win = int(span // window_s) + 1
    rel = w.t - w.t[0]
    win = (rel // window_s).astype(int)
    seq = np.array([bucket_index(DEFAULT_SEQ_BUCKETS, int(n)) for n in w.prompt + w.output])
    ttft_key, tpot_key = _no_target_inf(w.slo_ttft_ms), _no_target_inf(w.slo_tpot_ms)
    keys = sorted(set(zip(w.model.tolist(), seq.tolist(), ttft_key.tolist(), tpot_key.tolist())))
    C = len(keys)
    demand = np.zeros((C, n_win))
    capacity = np.zeros((len(pools), C))
    members, points = [], []  # per class: its requests; (pool, operating point) meeting its targets
    for c, (m, s, ttft, tpot) in enumerate(keys):
        sel = (w.model == m) & (seq == s) & (ttft_key == ttft) & (tpot_key == tpot)
        members.append(sel)
        np.add.at(demand[c], win[sel], w.output[sel])
        prompt, output = int(w.prompt[sel].mean()), int(w.output[sel].mean())
        longest = int((w.prompt[sel] + w.output[sel]).max())
        ops = []
        for p, (spec, f) in enumerate(pools):
            if w.models[m] not in spec.models or longest > f.max_model_len:
                continue
            for b in batch_ladder(f.max_batch):
                op = operating_point(f.hardware, f.model, b, prompt, output, f.max_batch)
                if op is None or op.ttft_s * 1e3 > ttft or op.tpot_s * 1e3 > tpot:
                    continue
                ops.append((p, b, op))
                capacity[p, c] = max(capacity[p, c], op.throughput_tok_s * spec.replicas)
        points.append(ops)
    # Deadlines in windows. Without both targets a class may wait until every token could have
    # been served: the trace's span, the free lag and what the fleet needs for all of them.
    fleet_tok_s = capacity.sum(axis=0)
    servable = fleet_tok_s > 0
    free_s = span + free_lag_s + float((demand.sum(axis=1)[servable] / fleet_tok_s[servable]).sum())
    lag = np.zeros(C, dtype=int)
    for c, (m, s, ttft, tpot) in enumerate(keys):
        deadline_s = ttft / 1e3 + float(w.output[members[c]].max()) * tpot / 1e3
        lag[c] = math.ceil((deadline_s if math.isfinite(deadline_s) else free_s) / window_s)
    # Energy per window served in, over every window a token may be served in.
    n_serve = n_win + int(lag.max())
    energy = np.full((len(pools), C, n_serve), np.inf)
    # A sequence waits at most its TTFT target (without one, as long as a class without targets may),
    # then decodes at the batch's step time.
    wait_s = np.where(np.isfinite(ttft_key), ttft_key / 1e3, free_s)
    starts = np.arange(n_serve) * window_s
    by_model = {m: w.model == m for m in {k[0] for k in keys}}
    arrived_by_end = {m: np.searchsorted(np.sort(rel[sel]), starts + window_s, side="left")
                      for m, sel in by_model.items()} if concurrency else {}
    for c, (m, *_) in enumerate(keys):
        same_model = by_model[m]
        for p, b, op in points[c]:
            if concurrency:  # sequences of the model that can be in the system during each window
                leave = np.sort((rel + wait_s + w.output * op.tpot_s)[same_model])
                in_system = arrived_by_end[m] - np.searchsorted(leave, starts, side="right")
                fits = b <= np.maximum(1, in_system)
                energy[p, c] = np.where(fits, np.minimum(energy[p, c], op.attributed_j_per_token), energy[p, c])
            else:
                energy[p, c] = np.minimum(energy[p, c], op.attributed_j_per_token)
    runnable = np.isfinite(energy).any(axis=(0, 2))
    total_tokens = float(demand[runnable].sum())
    if not total_tokens:
        return OracleBound(None, None, 0.0, window_s, n_win, C, "no pool can run any request")
    joules, served, x = solve_bound(demand[runnable], energy[:, runnable], capacity[:, runnable],
                                    window_s, lag[runnable])
    idle = sum(f.hardware.idle_watts_replica * s.replicas for s, f in pools) * span
    return OracleBound(
        joules / served if served else None,
        (joules + idle) / served if served else None,
        served / total_tokens, window_s, x.shape[2], int(runnable.sum()), "optimal", concurrency,
    )


def _no_target_inf(targets: np.ndarray) -> np.ndarray:
    """Targets in ms with "none" (NaN) as infinite, so they group and compare."""
    return np.where(np.isnan(targets), math.inf, targets)
