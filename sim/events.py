"""Simulation events: each handles itself against the run's state and returns
the events it causes (vidur's shape); the heap orders them.

Events at the same virtual time run completions first (a finished step frees
capacity before an arrival at that instant is routed), then in push order.
Ids come from the queue, one per simulation.
"""

from __future__ import annotations

import heapq
import itertools
import math

from fleet.profiles import observe_finished
from routing.errors import AllPoolsSaturated, ModelNotServed, NoFeasiblePool, NoHealthyPool
from routing.shape import RequestShape
from sim.pools import SimReplica
from sim.state import INFEASIBLE, NOT_SERVED, OK, SATURATED, SimState
from workers.emulation.batcher import Sequence as Seq
from workers.emulation.batcher import StepResult


class Event:
    """Something that happens at ``time``; ``id`` is set when it is queued."""

    __slots__ = ("time", "id")
    priority = 1

    def __init__(self, time: float):
        self.time = time
        self.id = -1

    def handle(self, state: SimState) -> list["Event"]:
        raise NotImplementedError


def next_step(replica: SimReplica, now: float) -> list["Event"]:
    """Start the replica's next engine step, if it has work: its completion event."""
    res = replica.batcher.step()
    replica.busy = res is not None
    if res is None and replica.draining:
        replica.pool.retire(replica, now)
    return [] if res is None else [StepDone(now + res.duration_s, replica, res)]


class StepDone(Event):
    """A replica's engine step ends: its tokens reach their requests."""

    __slots__ = ("replica", "result")
    priority = 0

    def __init__(self, time: float, replica: SimReplica, result: StepResult):
        super().__init__(time)
        self.replica = replica
        self.result = result

    def handle(self, state: SimState) -> list[Event]:
        res, replica, now = self.result, self.replica, self.time
        pool = replica.pool
        pool.energy_j += res.energy_j
        pool.attributed_j += res.attributed_energy_j
        pool.busy_s += res.duration_s
        pool.output_tokens += res.batch_size
        w = state.workload
        t, prompt, output = w.t, w.prompt, w.output
        learn = state.learn
        for i in res.first_token_ids:
            state.ttft[i] = now - t[i]
            pool.first_token(replica, int(prompt[i]))
            if learn:
                state.energy_start[i] = replica.slot_energy_j
        replica.slot_energy_j += res.energy_j / res.batch_size if res.batch_size else 0.0
        for i in res.finished_ids:
            state.e2e[i] = now - t[i]
            state.status[i] = OK
            pool.done(replica, int(output[i]), state.promised(i), now)
            state.observe_latency(i, pool.name)
            if learn:
                _observe(state, replica, i)
        return next_step(replica, now)


class Arrival(Event):
    """Request ``index`` of the workload arrives at the gateway and is routed."""

    __slots__ = ("index",)

    def __init__(self, time: float, index: int):
        super().__init__(time)
        self.index = index

    def handle(self, state: SimState) -> list[Event]:
        w, i, now = state.workload, self.index, self.time
        caused: list[Event] = []
        if i + 1 < len(w):
            caused.append(Arrival(float(w.t[i + 1]), i + 1))
        ttft, tpot = w.slo_ttft_ms[i], w.slo_tpot_ms[i]
        shape = RequestShape(
            w.models[w.model[i]], int(w.prompt[i]), int(w.output[i]), 1,
            None if math.isnan(ttft) else float(ttft), None if math.isnan(tpot) else float(tpot),
        )
        try:
            decision = state.router.choose(shape, [s for p in state.pools for s in p.states(now)])
        except AllPoolsSaturated:
            state.status[i] = SATURATED
            return caused
        except NoFeasiblePool:
            state.status[i] = INFEASIBLE
            return caused
        except (ModelNotServed, NoHealthyPool):
            state.status[i] = NOT_SERVED
            return caused
        best = decision.ranked[0]
        pool = state.by_name[best.name]
        state.pool[i] = state.pool_index[best.name]
        if state.learn:
            state.batch[i] = best.batch
        if best.prediction is not None:
            state.predicted(i, best.prediction)
        promised = decision.promised_tpot_ms
        state.promise(i, promised)
        replica = pool.replica(best.replica)
        pool.sent(replica, shape.prompt_tokens, shape.max_new_tokens, promised, now)
        pool.requests += 1
        seq = Seq(i, shape.prompt_tokens, shape.max_new_tokens)
        if state.dispatch_s > 0:
            caused.append(Dispatch(now + state.dispatch_s, replica, seq))
        else:
            caused += dispatch(replica, seq, now)
        return caused


def dispatch(replica: SimReplica, seq: Seq, now: float) -> list[Event]:
    """The sequence reaches its replica and joins its batcher."""
    replica.batcher.add(seq)
    return [] if replica.busy else next_step(replica, now)


class Dispatch(Event):
    """A routed request reaches its replica's engine ``dispatch_s`` after it was routed:
    the request path (proxy, gateway, Ray handle) that the engines do not see."""

    __slots__ = ("replica", "seq")

    def __init__(self, time: float, replica: SimReplica, seq: Seq):
        super().__init__(time)
        self.replica = replica
        self.seq = seq

    def handle(self, state: SimState) -> list[Event]:
        return dispatch(self.replica, self.seq, self.time)


def _observe(state: SimState, replica: SimReplica, i: int) -> None:
    w = state.workload
    out = int(w.output[i])
    observe_finished(
        replica.pool.profile, int(state.batch[i]), int(w.prompt[i]) + out,
        ttft_s=float(state.ttft[i]), e2e_s=float(state.e2e[i]), output_tokens=out,
        energy_j=replica.slot_energy_j - float(state.energy_start[i]),
    )


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
