"""The mixed-integer program: integer replicas per hardware, fractional class assignment.

Variables: ``n_h`` (replicas of type h, integer) and ``x_ch`` (share of class c
sent to h). Each class is fully served (sum_h x_ch = 1); type h's replicas
carry their load at no more than ``utilisation`` of SLO-feasible capacity
(sum_c x_ch · rate_c / cap_ch ≤ utilisation · n_h). Objective: $/h
(sum price_h n_h) or W (sum idle_h n_h + sum x_ch rate_c J_ch), each with a
tiny tie-break on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


class PlanInfeasible(ValueError):
    """No mix within the replica bound serves every class within its SLO."""


@dataclass(frozen=True, slots=True)
class Solution:
    replicas: np.ndarray  # per hardware type
    share: np.ndarray  # classes × types


def solve(rate: np.ndarray, cap: np.ndarray, joules: np.ndarray, price: np.ndarray,
          idle_w: np.ndarray, *, objective: str = "cost", max_replicas: int = 64,
          utilisation: float = 0.8) -> Solution:
    """``rate`` per class (req/s); ``cap``/``joules`` classes × types (req/s per
    replica, attributed J per request; cap ≤ 0 marks an infeasible pair)."""
    C, H = cap.shape
    feasible = cap > 0
    if np.any(rate > 0) and not np.all(feasible[rate > 0].any(axis=1)):
        raise PlanInfeasible("a request class has no hardware that meets its SLO and length")
    nx = C * H
    power_load = np.where(feasible, joules, 0.0) * rate[:, None]
    if objective == "cost":
        c_n, c_x = price.astype(float), 1e-6 * power_load.ravel()
        c_n = c_n + 1e-6 * idle_w
    elif objective == "energy":
        c_n, c_x = idle_w.astype(float) + 1e-6 * price, power_load.ravel()
    else:
        raise ValueError(f"unknown objective {objective!r}")
    c = np.concatenate([c_n, c_x])
    rows, lo, hi = [], [], []
    for ci in range(C):  # every class fully served
        r = np.zeros(H + nx)
        r[H + ci * H:H + ci * H + H] = 1
        rows.append(r), lo.append(1.0), hi.append(1.0)
    for h in range(H):  # capacity
        r = np.zeros(H + nx)
        r[h] = -utilisation
        for ci in range(C):
            if feasible[ci, h]:
                r[H + ci * H + h] = rate[ci] / cap[ci, h]
        rows.append(r), lo.append(-np.inf), hi.append(0.0)
    upper_x = feasible.ravel().astype(float)
    bounds = Bounds(np.zeros(H + nx), np.concatenate([np.full(H, max_replicas), upper_x]))
    integrality = np.concatenate([np.ones(H), np.zeros(nx)])
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), bounds=bounds,
               integrality=integrality)
    if res.x is None:
        raise PlanInfeasible(f"no mix of at most {max_replicas} replicas per type serves the load ({res.message})")
    n = np.round(res.x[:H]).astype(int)
    return Solution(n, res.x[H:].reshape(C, H))
