"""What simulation events read and change: the workload, the pools, the
router and the per-request outcome arrays of one run.

Events (``sim.events``) take this state and return the events they cause;
the simulation (``sim.simulation``) owns the clock and the queue. Outcomes
are preallocated arrays, so a million requests cost tens of megabytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routing.framework import Router
from routing.predictor import Prediction
from sim.pools import SimPool
from sim.workload import Workload

#: Request outcomes in ``SimState.status``.
PENDING, OK, SATURATED, INFEASIBLE, NOT_SERVED = 0, 1, 2, 3, 4


class SimState:
    """One run's mutable world; ``learn`` folds finished requests into profiles;
    ``dispatch_s`` delays each routed request on its way to the engine."""

    def __init__(self, workload: Workload, pools: Sequence[SimPool], router: Router, *, learn: bool,
                 dispatch_s: float = 0.0):
        self.workload = workload
        self.dispatch_s = dispatch_s
        self.pools = list(pools)
        self.router = router
        self.learn = learn
        self.autoscaler = None  # a sim.autoscale.SimAutoscaler where pools autoscale
        self.by_name = {p.name: p for p in self.pools}
        self.pool_index = {p.name: i for i, p in enumerate(self.pools)}
        n = len(workload)
        self.status = np.zeros(n, dtype=np.int8)
        self.pool = np.full(n, -1, dtype=np.int16)
        self.ttft = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        self.pred_ttft = np.full(n, np.nan)  # the chosen pool's forecast, s
        self.pred_tpot = np.full(n, np.nan)
        self._forecasts: dict[int, Prediction] = {}  # in flight, until observed
        self._promised: dict[int, float] = {}  # in flight: the TPOT target the router promised (Decision)
        if learn:
            self.batch = np.zeros(n, dtype=np.int32)
            self.energy_start = np.zeros(n)

    def predicted(self, i: int, prediction: Prediction) -> None:
        """Request ``i`` was sent with this forecast."""
        self.pred_ttft[i] = prediction.ttft_ms / 1e3
        self.pred_tpot[i] = prediction.tpot_ms / 1e3
        self._forecasts[i] = prediction

    def promise(self, i: int, tpot_ms: float | None) -> None:
        """Request ``i`` was routed with this TPOT promised (``Decision.promised_tpot_ms``)."""
        if tpot_ms is not None:
            self._promised[i] = tpot_ms

    def promised(self, i: int) -> float | None:
        """Request ``i`` finished: the TPOT it was promised, forgotten."""
        return self._promised.pop(i, None)

    def observe_latency(self, i: int, pool: str) -> None:
        """Request ``i`` finished: feed its observed TTFT/TPOT to the predictor, as the gateway does."""
        prediction = self._forecasts.pop(i, None)
        if prediction is None:
            return
        out = int(self.workload.output[i])
        ttft = float(self.ttft[i])
        tpot = (float(self.e2e[i]) - ttft) / (out - 1) * 1e3 if out > 1 else None
        self.router.predictor.observe(pool, prediction, ttft * 1e3, tpot)
