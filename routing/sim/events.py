"""Simulation events over a heap; ids come from the queue, one per simulation.

Events at the same virtual time run completions first (a finished step frees
capacity before an arrival at that instant is routed), then in push order.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routing.sim.pools import SimReplica
    from routing.sim.simulation import Simulation
    from workers.emulation.batcher import StepResult


class Event:
    """Something that happens at ``time``; ``id`` is set when it is queued."""

    __slots__ = ("time", "id")
    priority = 1

    def __init__(self, time: float):
        self.time = time
        self.id = -1

    def handle(self, sim: "Simulation") -> None:
        raise NotImplementedError


class StepDone(Event):
    """A replica's engine step ends: its tokens reach their requests."""

    __slots__ = ("replica", "result")
    priority = 0

    def __init__(self, time: float, replica: "SimReplica", result: "StepResult"):
        super().__init__(time)
        self.replica = replica
        self.result = result

    def handle(self, sim):
        sim.on_step_done(self)


class Arrival(Event):
    """Request ``index`` of the workload arrives at the gateway."""

    __slots__ = ("index",)

    def __init__(self, time: float, index: int):
        super().__init__(time)
        self.index = index

    def handle(self, sim):
        sim.on_arrival(self)


class EventQueue:
    """A min-heap of events ordered by (time, priority, id); owns its id counter."""

    def __init__(self):
        self._heap: list[tuple[float, int, int, Event]] = []
        self._ids = itertools.count()

    def push(self, event: Event) -> Event:
        event.id = next(self._ids)
        heapq.heappush(self._heap, (event.time, event.priority, event.id, event))
        return event

    def pop(self) -> Event:
        return heapq.heappop(self._heap)[3]

    def __len__(self) -> int:
        return len(self._heap)
