"""Autoscaling in the simulation: ``routing.scaler`` on the virtual clock.

Every ``interval_s`` a :class:`ScaleTick` hands the scaler a snapshot of the
autoscaled pools (in-flight sequences, serving and starting replicas, their
efficiency figures from ``fleet.autoscaling``) and applies its decisions: a
replica asked for draws idle power at once and serves after its pool's
``startup_s`` (:class:`ReplicaReady`); a shed one drains (``sim.pools``).
Ticks stop once the last request has arrived and nothing is in flight or starting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.scaler import PoolFigures, ScaleDecision, Scaler
from sim.events import Event
from sim.pools import SimPool
from sim.state import SimState

#: Seconds between scaler decisions (Ray Serve's controller loop runs every 0.1 s,
#: but it decides on metrics averaged over ``look_back_period_s``, 30 s by default).
DEFAULT_INTERVAL_S = 5.0


@dataclass
class SimAutoscaler:
    scaler: Scaler
    figures: Mapping[str, PoolFigures]
    interval_s: float = DEFAULT_INTERVAL_S
    decisions: list[tuple[float, ScaleDecision]] = field(default_factory=list)  # changes only

    def tick(self, state: SimState, now: float) -> list[Event]:
        pools = [p for p in state.pools if p.name in self.figures]
        loads = [self.figures[p.name].load(len(p.replicas), p.starting, p.in_flight) for p in pools]
        caused: list[Event] = []
        for pool, d in zip(pools, self.scaler.decide(loads)):
            if d.delta:
                self.decisions.append((now, d))
            for _ in range(d.delta):
                pool.begin_start(now)
                caused.append(ReplicaReady(now + self.figures[pool.name].limits.startup_s, pool))
            for _ in range(-d.delta):
                if pool.replicas:
                    pool.shed(now)
        if now < state.workload.t[-1] or any(p.in_flight or p.starting for p in pools):
            caused.append(ScaleTick(now + self.interval_s))
        return caused


class ScaleTick(Event):
    """The scaler looks at the pools and decides; after arrivals at the same instant."""

    __slots__ = ()
    priority = 2

    def handle(self, state: SimState) -> list[Event]:
        return state.autoscaler.tick(state, self.time)


class ReplicaReady(Event):
    """A replica asked for earlier has started and takes requests."""

    __slots__ = ("pool",)
    priority = 0

    def __init__(self, time: float, pool: SimPool):
        super().__init__(time)
        self.pool = pool

    def handle(self, state: SimState) -> list[Event]:
        self.pool.replica_ready(self.time)
        return []
