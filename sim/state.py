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
from sim.pools import SimPool
from sim.workload import Workload

#: Request outcomes in ``SimState.status``.
PENDING, OK, SATURATED, INFEASIBLE, NOT_SERVED = 0, 1, 2, 3, 4


class SimState:
    """One run's mutable world; ``learn`` folds finished requests into profiles."""

    def __init__(self, workload: Workload, pools: Sequence[SimPool], router: Router, *, learn: bool):
        self.workload = workload
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
        if learn:
            self.batch = np.zeros(n, dtype=np.int32)
            self.energy_start = np.zeros(n)
