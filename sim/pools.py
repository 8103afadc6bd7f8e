"""Simulated pools: replicas that step in virtual time, and their PoolState.

A pool whose model the hardware catalog knows runs one ``ContinuousBatcher``
(the emulated engine's own) per replica. A pool with only a measured
``EfficiencyProfile`` (a real engine) runs a ``ProfileBatcher`` whose step
time and power come from the profile's cells. A pool of several replicas is
offered to the router one state per replica, as the gateway offers it
(``routing.state.PoolState``), and a request joins the replica its decision
names; a pool-wide decision joins the replica with the fewest sequences.

Replicas of an autoscaled pool come and go (``sim.autoscale``): a new one
draws idle power from the moment it is asked for and serves after its
start-up time; a shed one takes no new requests and leaves once its running
sequences finish. ``replica_seconds`` counts every replica while it is up
(starting, serving, draining), which is what idle draw and price are paid on.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from routing.profile import EfficiencyProfile
from fleet.profiles import engine_figures, modelled_profile
from routing.state import PoolState, SentLoad
from workers.emulation.batcher import ContinuousBatcher, Sequence, StepResult
from workers.hardware import get_hardware
from workers.spec import PoolSpec


class ProfileBatcher:
    """Continuous batching driven by a profile: a step lasts the cell's TPOT
    (plus ``ttft - tpot`` when it admits prefills) at the running batch and the
    longest running sequence, and draws the cell's watts (else J/token × batch)."""

    def __init__(self, profile: EfficiencyProfile, idle_watts: float, max_batch: int):
        self.profile = profile
        self.idle_watts = idle_watts
        self.max_batch = max_batch
        self.max_model_len = max(c.seq_len for c in profile.cells() if c.feasible and c.tpot_ms)
        self._waiting: deque[Sequence] = deque()
        self._left: dict = {}  # id -> tokens still to emit
        self._length: dict = {}  # id -> prompt + max new

    @property
    def running(self) -> int:
        return len(self._left)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        return len(self._left) / self.max_batch

    def has_work(self) -> bool:
        return bool(self._left or self._waiting)

    def add(self, seq: Sequence) -> None:
        self._waiting.append(seq)

    def step(self) -> StepResult | None:
        if not self.has_work():
            return None
        first = []
        while self._waiting and len(self._left) < self.max_batch:
            seq = self._waiting.popleft()
            self._left[seq.id] = seq.max_new_tokens
            self._length[seq.id] = seq.prompt_tokens + seq.max_new_tokens
            first.append(seq.id)
        batch = len(self._left)
        cell = self.profile.lookup(batch, max(self._length.values()))
        duration = (cell.tpot_ms if cell and cell.tpot_ms else 50.0) / 1e3
        if first and cell and cell.ttft_ms:
            duration += max(0.0, cell.ttft_ms / 1e3 - duration)
        if cell and cell.watts:
            energy = cell.watts * duration
        elif cell and cell.j_per_token:
            energy = cell.j_per_token * batch
        else:
            energy = self.idle_watts * duration
        tokens = tuple(self._left)
        done = []
        for sid in tokens:
            self._left[sid] -= 1
            if not self._left[sid]:
                del self._left[sid], self._length[sid]
                done.append(sid)
        return StepResult(duration, energy, energy - self.idle_watts * duration, batch, batch,
                          tuple(first), tokens, tuple(done))


class SimReplica:
    """One engine of a pool; ``busy`` while a step is scheduled; ``key`` names it in routing states."""

    __slots__ = ("pool", "batcher", "busy", "slot_energy_j", "draining", "key", "sent", "requests")

    def __init__(self, pool: "SimPool", batcher: ContinuousBatcher | ProfileBatcher, key: str = "0"):
        self.pool = pool
        self.batcher = batcher
        self.busy = False
        self.slot_energy_j = 0.0  # running sum of step energy / batch: per-request energy
        self.draining = False  # shed: finishes its sequences, takes no new ones
        self.key = key
        self.sent = SentLoad()  # what the router sent it and has not seen finish
        self.requests = 0  # routed here


class SimPool:
    """A pool in the simulation, with its accounting."""

    def __init__(self, spec: PoolSpec, batchers: list, idle_watts: float, price_per_hour: float,
                 profile: EfficiencyProfile | None, make_batcher: Callable[[], Any] | None = None):
        self.spec = spec
        self.name = spec.name
        self._keys = itertools.count()
        self.replicas = [SimReplica(self, b, str(next(self._keys))) for b in batchers]  # serving
        self.make_batcher = make_batcher
        self.starting = 0
        self.draining: list[SimReplica] = []
        self._initial = len(self.replicas)
        self._up_area = 0.0  # replica-seconds since t = 0
        self._up_since = 0.0
        self.idle_watts = idle_watts  # per replica
        self.price_per_hour = price_per_hour  # per replica
        self.profile = profile
        self.models = tuple(spec.models)
        some = batchers or [make_batcher()]
        self.max_seq_len = min(b.max_model_len for b in some)
        hw = get_hardware(spec.hardware)
        self.batch_buckets = tuple(hw.batch_buckets or ())
        self.dynamic_watts = hw.peak_watts_replica - hw.idle_watts_replica  # per replica
        self.sent_total = SentLoad()  # over every replica
        self.max_batch = some[0].max_batch
        self.requests = 0
        self.output_tokens = 0
        self.energy_j = 0.0  # step energy (idle during steps included)
        self.attributed_j = 0.0
        self.busy_s = 0.0
        self._load_area = 0.0
        self._load_since = 0.0

    @property
    def capacity(self) -> int:
        return self.spec.max_ongoing_requests * len(self.replicas)

    @property
    def up(self) -> int:
        """Replicas drawing power: starting, serving or draining."""
        return len(self.replicas) + self.starting + len(self.draining)

    def _count(self, now: float) -> None:
        self._up_area += self.up * (now - self._up_since)
        self._up_since = now

    def begin_start(self, now: float) -> None:
        """A replica is asked for: it draws idle power until ``replica_ready``."""
        self._count(now)
        self.starting += 1

    def replica_ready(self, now: float) -> None:
        self._count(now)
        self.starting -= 1
        self.replicas.append(SimReplica(self, self.make_batcher(), str(next(self._keys))))

    def shed(self, now: float) -> None:
        """Take the least busy serving replica out; it leaves when its sequences finish."""
        self._count(now)
        r = min(self.replicas, key=lambda r: r.batcher.running + r.batcher.waiting)
        self.replicas.remove(r)
        if r.batcher.has_work():
            r.draining = True
            self.draining.append(r)

    def retire(self, replica: SimReplica, now: float) -> None:
        """A draining replica ran out of work: it stops drawing power."""
        self._count(now)
        self.draining.remove(replica)
        replica.draining = False

    def replica_seconds(self, start: float, end: float) -> float:
        """Replica-seconds up over [start, end] (replicas change only after ``start``)."""
        return self._up_area + self.up * (end - self._up_since) - self._initial * start

    def state(self, now: float) -> PoolState:
        """The snapshot the gateway would build: exact in-flight and queue, polled figures fresh."""
        running = waiting = 0
        usage = 0.0
        for r in self.replicas:
            b = r.batcher
            running += b.running
            waiting += b.waiting
            usage += b.kv_usage
        n = len(self.replicas)
        sent = self.sent_total
        return PoolState(
            self.name, self.spec.hardware, self.models, n > 0, sent.in_flight, running, waiting,
            self.capacity, n, 1.0 - usage / n if n else 0.0, self.max_seq_len,
            self.batch_buckets, self.price_per_hour, self.spec.emulated, self.profile,
            sent.prefilling, sent.prefill_tokens, sent.decode_tokens, sent.prompts.rate(now),
            sent.arrivals.rate(now), self.max_batch, 0, self.dynamic_watts,
            tightest_tpot_ms=sent.targets.tightest(),
        )

    def states(self, now: float) -> list[PoolState]:
        """What the router is offered: one state per serving replica when there are several, else the pool's."""
        if len(self.replicas) < 2:
            return [self.state(now)]
        out = []
        for r in self.replicas:
            b, sent = r.batcher, r.sent
            out.append(PoolState(
                self.name, self.spec.hardware, self.models, True, sent.in_flight, b.running, b.waiting,
                self.spec.max_ongoing_requests, 1, 1.0 - b.kv_usage, self.max_seq_len,
                self.batch_buckets, self.price_per_hour, self.spec.emulated, self.profile,
                sent.prefilling, sent.prefill_tokens, sent.decode_tokens, sent.prompts.rate(now),
                sent.arrivals.rate(now), self.max_batch, 0, self.dynamic_watts,
                tightest_tpot_ms=sent.targets.tightest(), replica=r.key,
            ))
        return out

    def replica(self, key: str = "") -> SimReplica:
        """The replica a routing decision named (``key``), else the one with the fewest running + waiting."""
        reps = self.replicas
        if key:
            for r in reps:
                if r.key == key:
                    return r
        if len(reps) == 1:
            return reps[0]
        return min(reps, key=lambda r: r.batcher.running + r.batcher.waiting)

    def sent(self, replica: SimReplica, prompt: int, output: int, tpot_target_ms: float | None,
             now: float) -> None:
        """A sequence routed to ``replica``: it waits for its prefill and owes ``output`` tokens."""
        self._count_load(now)
        self.sent_total.sent(1, prompt, output, tpot_target_ms, now)
        replica.sent.sent(1, prompt, output, tpot_target_ms, now)
        replica.requests += 1

    def first_token(self, replica: SimReplica, prompt: int) -> None:
        self.sent_total.first_tokens(1, prompt)
        replica.sent.first_tokens(1, prompt)

    def done(self, replica: SimReplica, output: int, tpot_target_ms: float | None, now: float) -> None:
        """A sequence sent with ``sent`` finished."""
        self._count_load(now)
        self.sent_total.done(1, output, tpot_target_ms)
        replica.sent.done(1, output, tpot_target_ms)

    @property
    def in_flight(self) -> int:
        return self.sent_total.in_flight

    def _count_load(self, now: float) -> None:
        self._load_area += self.in_flight * (now - self._load_since)
        self._load_since = now

    def mean_load(self, start: float, end: float) -> float:
        """Time-averaged sequences in flight over [start, end]."""
        area = self._load_area + self.in_flight * (end - self._load_since)
        return area / (end - start) if end > start else 0.0


def build_pools(specs: Iterable[PoolSpec], models: Iterable[str],
                profiles: Mapping[str, EfficiencyProfile] | None = None) -> list[SimPool]:
    """Simulated pools for the specs serving any of ``models`` (others are ignored).

    Routing profiles come from ``profiles`` (measured) where given, else are
    modelled from the hardware model. Raises ``ValueError`` for a pool with
    neither a catalog model nor a profile.
    """
    wanted, profiles = set(models), profiles or {}
    pools = []
    for spec in specs:
        if not wanted & set(spec.models):
            continue
        figures = engine_figures(spec)
        measured = profiles.get(spec.name)
        if measured is not None:  # a copy: online learning must not touch the caller's
            measured = EfficiencyProfile.from_dict(measured.to_dict(), source=spec.name)
        hw = get_hardware(spec.hardware)
        if figures is not None:
            def make(f=figures):
                return ContinuousBatcher(f.hardware, f.model, f.max_batch, f.max_model_len)
            profile = measured or modelled_profile(spec.name, spec.models[0], figures)
            price = figures.price_per_hour
        elif measured is not None:
            max_batch = int(spec.engine_args.get("max_num_seqs") or spec.max_ongoing_requests)
            def make(m=measured, idle=hw.idle_watts_replica, b=max_batch):
                return ProfileBatcher(m, idle, b)
            profile = measured
            price = spec.price_per_hour if spec.price_per_hour is not None else hw.price_per_hour_usd
        else:
            raise ValueError(f"pool {spec.name}: model {spec.model!r} is not in the hardware "
                             "catalog and no profile was given; cannot simulate it")
        batchers = [make() for _ in range(spec.start_replicas)]
        pools.append(SimPool(spec, batchers, hw.idle_watts_replica, price, profile, make))
    return pools
