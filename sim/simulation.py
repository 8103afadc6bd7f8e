"""The discrete-event simulation: arrivals routed by the gateway's own router,
pools stepping their batchers in virtual time.

The clock, the event ids and the router (with its RNG and round-robin cursor)
belong to one ``Simulation``: two never share state. The loop pops an event,
moves the clock to it, and queues what its handler returns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

from routing.config import RoutingConfig, build_router
from routing.scaler import PoolFigures, Scaler
from sim.autoscale import DEFAULT_INTERVAL_S, ScaleTick, SimAutoscaler
from sim.events import Arrival, EventQueue
from sim.pools import SimPool
from sim.state import SimState
from sim.workload import Workload


class Simulation:
    """One run of ``workload`` through ``pools`` under ``config``.

    ``learn`` folds every finished request into its pool's profile
    (``profile.observe``), as the gateway does online. ``dispatch_s`` is the
    request path's latency between routing and the engine (HTTP proxy,
    gateway, Ray handle, and the stream's way back), counted in TTFT; the
    engines are modelled, that path is not, so it is measured
    (``bench/sim_fidelity.py`` probes it) and passed in. ``autoscale``: the
    figures of the pools ``routing.scaler`` drives (``sim.autoscale``), on
    this simulation's clock.
    """

    def __init__(self, workload: Workload, pools: Sequence[SimPool], config: RoutingConfig,
                 *, seed: int = 0, learn: bool = False, dispatch_s: float = 0.0,
                 autoscale: Mapping[str, PoolFigures] | None = None,
                 scale_interval_s: float = DEFAULT_INTERVAL_S):
        if dispatch_s < 0:
            raise ValueError("dispatch_s must be >= 0")
        self.config = config
        self._now = 0.0
        self.queue = EventQueue()
        self.router = build_router(config, clock=self.now, rng=random.Random(seed))
        self.state = SimState(workload, pools, self.router, learn=learn, dispatch_s=dispatch_s)
        if autoscale:
            self.state.autoscaler = SimAutoscaler(Scaler(clock=self.now), autoscale, scale_interval_s)
        self.wall_s = 0.0

    @property
    def workload(self) -> Workload:
        return self.state.workload

    @property
    def pools(self) -> list[SimPool]:
        return self.state.pools

    def now(self) -> float:
        """The virtual clock (injected into the router)."""
        return self._now

    def run(self) -> "Simulation":
        """Process every event; returns self for chaining into ``results``."""
        started = time.perf_counter()
        state, queue = self.state, self.queue
        if len(state.workload):
            queue.push(Arrival(float(state.workload.t[0]), 0))
            if state.autoscaler:
                queue.push(ScaleTick(float(state.workload.t[0])))
        while queue:
            event = queue.pop()
            self._now = event.time
            for caused in event.handle(state):
                queue.push(caused)
        self.wall_s = time.perf_counter() - started
        return self
