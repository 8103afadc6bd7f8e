"""The discrete-event simulation: arrivals routed by the gateway's own router,
pools stepping their batchers in virtual time.

The clock, the event ids and the router (with its RNG and round-robin cursor)
belong to one ``Simulation``: two never share state. Per-request outcomes go
into preallocated arrays, so a million requests cost tens of megabytes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence

import numpy as np

from routing.config import RoutingConfig, build_router
from routing.errors import AllPoolsSaturated, ModelNotServed, NoFeasiblePool, NoHealthyPool
from routing.shape import RequestShape
from routing.sim.events import Arrival, EventQueue, StepDone
from routing.sim.pools import SimPool, SimReplica
from routing.sim.profiles import observe_finished
from routing.sim.workload import Workload
from workers.emulation.batcher import Sequence as Seq

#: Request outcomes in ``Simulation.status``.
PENDING, OK, SATURATED, INFEASIBLE, NOT_SERVED = 0, 1, 2, 3, 4
STATUS_NAMES = {SATURATED: "saturated (429)", INFEASIBLE: "infeasible (400)",
                NOT_SERVED: "model not served (404)"}


class Simulation:
    """One run of ``workload`` through ``pools`` under ``config``.

    ``learn`` folds every finished request into its pool's profile
    (``profile.observe``), as the gateway does online.
    """

    def __init__(self, workload: Workload, pools: Sequence[SimPool], config: RoutingConfig,
                 *, seed: int = 0, learn: bool = False):
        self.workload = workload
        self.pools = list(pools)
        self.config = config
        self.learn = learn
        self._now = 0.0
        self.queue = EventQueue()
        self.router = build_router(config, clock=self.now, rng=random.Random(seed))
        self._by_name = {p.name: p for p in self.pools}
        self._pool_index = {p.name: i for i, p in enumerate(self.pools)}
        n = len(workload)
        self.status = np.zeros(n, dtype=np.int8)
        self.pool = np.full(n, -1, dtype=np.int16)
        self.ttft = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        if learn:
            self._batch = np.zeros(n, dtype=np.int32)
            self._energy_start = np.zeros(n)
        self.wall_s = 0.0

    def now(self) -> float:
        """The virtual clock (injected into the router)."""
        return self._now

    def run(self) -> "Simulation":
        """Process every event; returns self for chaining into ``results``."""
        started = time.perf_counter()
        if len(self.workload):
            self.queue.push(Arrival(float(self.workload.t[0]), 0))
        queue = self.queue
        while queue:
            event = queue.pop()
            self._now = event.time
            event.handle(self)
        self.wall_s = time.perf_counter() - started
        return self

    # -- events --------------------------------------------------------------

    def on_arrival(self, ev: Arrival) -> None:
        w, i = self.workload, ev.index
        if i + 1 < len(w):
            self.queue.push(Arrival(float(w.t[i + 1]), i + 1))
        ttft, tpot = w.slo_ttft_ms[i], w.slo_tpot_ms[i]
        shape = RequestShape(
            w.models[w.model[i]], int(w.prompt[i]), int(w.output[i]), 1,
            None if math.isnan(ttft) else float(ttft), None if math.isnan(tpot) else float(tpot),
        )
        try:
            decision = self.router.choose(shape, [p.state() for p in self.pools])
        except AllPoolsSaturated:
            self.status[i] = SATURATED
            return
        except NoFeasiblePool:
            self.status[i] = INFEASIBLE
            return
        except (ModelNotServed, NoHealthyPool):
            self.status[i] = NOT_SERVED
            return
        best = decision.ranked[0]
        pool = self._by_name[best.name]
        self.pool[i] = self._pool_index[best.name]
        if self.learn:
            self._batch[i] = best.batch
        pool.add_in_flight(1, self._now)
        pool.requests += 1
        replica = pool.replica()
        replica.batcher.add(Seq(i, shape.prompt_tokens, shape.max_new_tokens))
        if not replica.busy:
            self._step(replica)

    def on_step_done(self, ev: StepDone) -> None:
        res, replica, now = ev.result, ev.replica, ev.time
        pool = replica.pool
        pool.energy_j += res.energy_j
        pool.attributed_j += res.attributed_energy_j
        pool.busy_s += res.duration_s
        pool.output_tokens += res.batch_size
        t = self.workload.t
        learn = self.learn
        for i in res.first_token_ids:
            self.ttft[i] = now - t[i]
            if learn:
                self._energy_start[i] = replica.slot_energy_j
        replica.slot_energy_j += res.energy_j / res.batch_size if res.batch_size else 0.0
        for i in res.finished_ids:
            self.e2e[i] = now - t[i]
            self.status[i] = OK
            pool.add_in_flight(-1, now)
            if learn:
                self._observe(pool, replica, i)
        self._step(replica)

    # -- helpers ---------------------------------------------------------------

    def _step(self, replica: SimReplica) -> None:
        res = replica.batcher.step()
        replica.busy = res is not None
        if res is not None:
            self.queue.push(StepDone(self._now + res.duration_s, replica, res))

    def _observe(self, pool: SimPool, replica: SimReplica, i: int) -> None:
        w = self.workload
        out = int(w.output[i])
        observe_finished(
            pool.profile, int(self._batch[i]), int(w.prompt[i]) + out,
            ttft_s=float(self.ttft[i]), e2e_s=float(self.e2e[i]), output_tokens=out,
            energy_j=replica.slot_energy_j - float(self._energy_start[i]),
        )
