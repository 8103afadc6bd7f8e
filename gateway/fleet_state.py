"""What the gateway knows about its pools: exact in-flight counts, polled stats.

The gateway is the only client of its pools, so it counts the sequences it
has in flight on each pool exactly; running/waiting/KV figures and energy
counters come from polling replicas (each poll reaches one replica; the
latest figures of every replica seen are kept).

A pool is *ready* once it answered at least one poll, is not *down* and its
polls are not stale; it is *healthy* (routable) when ready and not ejected
by the outlier detector. A pool is down after ``down_after_failed_polls``
failed polls in a row (its replicas died with their node, say) and ready
again on the first poll that succeeds (Serve restarted them); listeners
registered with :meth:`FleetState.on_down` hear of each fall. When every ready pool of a model is ejected, ejection is
ignored for that model (Envoy's panic mode): a guess beats a certain 503.

A pool with two or more replicas the relay can reach is offered to the
router one state per replica (``routing.state.PoolState.replica``), so it
places each request on a replica, not just a pool; the gateway then counts
what it sent per replica too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.api import PoolView
from gateway.outliers import OutlierDetector
from routing import PoolState, SentLoad
from workers.hardware import HardwareModel, get_hardware
from workers.protocol import ReplicaStats
from workers.spec import PoolSpec

#: A pool whose polls have failed for this long counts as unhealthy; a replica not heard from for this
#: long is no longer offered to the router on its own.
STALE_AFTER_S = 30.0

_NOTHING_SENT = SentLoad()  # a replica this gateway has sent nothing (read only)


@dataclass
class PoolRecord:
    spec: PoolSpec
    hardware: HardwareModel
    replicas: dict[str, ReplicaStats] = field(default_factory=dict)
    last_ok: float | None = None
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)
    failed_polls: int = 0  # in a row
    down: bool = False
    sent: SentLoad = field(default_factory=SentLoad)  # what this gateway has in flight on the pool
    sent_to: dict[str, SentLoad] = field(default_factory=dict)  # the same per replica routed to by name
    unreachable: set[str] = field(default_factory=set)  # replicas the relay could not reach since they last answered
    heard: dict[str, float] = field(default_factory=dict)  # replica -> when a poll or a finished request last came

    @property
    def in_flight(self) -> int:
        return self.sent.in_flight

    @property
    def slots(self) -> int:
        """One replica's batch slots: the engine's batch limit, else its ongoing-request limit."""
        args = self.spec.engine_args
        return int(args.get("max_batch") or args.get("max_num_seqs") or self.spec.max_ongoing_requests)

    @property
    def prefill_chunk(self) -> int:
        """Prefill tokens per engine step with chunked prefill; 0: whole prompts (the emulated engine)."""
        args = self.spec.engine_args
        return int(args.get("max_num_batched_tokens") or 0) if args.get("enable_chunked_prefill") else 0

    @property
    def price_per_hour(self) -> float:
        return self.spec.price_per_hour if self.spec.price_per_hour is not None else self.hardware.price_per_hour_usd

    def total(self, key: str) -> float:
        return sum(getattr(r, key) or 0 for r in self.replicas.values())

    def starting(self) -> bool:
        """Never answered a poll (nor finished a request): its replicas are still coming up."""
        return self.last_ok is None

    def ready(self, now: float) -> bool:
        if self.starting() or self.down:
            return False
        if self.last_error is None:
            return True
        return now - self.last_ok < STALE_AFTER_S

    def live_replicas(self) -> int:
        """Replicas capacity counts on: the fixed count, or for an autoscaled pool the
        replicas seen answering, within its bounds (a replica scaled away stays counted)."""
        a = self.spec.autoscaling
        if a is None:
            return self.spec.replicas
        return min(max(len(self.replicas), self.spec.start_replicas, 1), a.max_replicas)

    def max_seq_len(self) -> int:
        limits = [r.max_model_len for r in self.replicas.values() if r.max_model_len]
        if self.hardware.max_seq_len:
            limits.append(self.hardware.max_seq_len)
        return min(limits) if limits else 1 << 30


class FleetState:
    def __init__(
        self,
        pools: list[PoolSpec],
        clock=time.monotonic,
        outliers: OutlierDetector | None = None,
        down_after_failed_polls: int = 2,
    ):
        self._clock = clock
        self.down_after_failed_polls = down_after_failed_polls
        self._down_listeners: list[Callable[[str], None]] = []
        self.outliers = outliers or OutlierDetector(base_s=2.0, max_s=60.0, clock=clock)
        self.pools: dict[str, PoolRecord] = {
            p.name: PoolRecord(p, get_hardware(p.hardware)) for p in pools
        }
        self.profiles: dict[str, Any] = {}

    def _loads(self, pool: str, replica: str) -> tuple[SentLoad, ...]:
        """The pool's count, and the replica's when the decision named one."""
        rec = self.pools[pool]
        if not replica:
            return (rec.sent,)
        return rec.sent, rec.sent_to.setdefault(replica, SentLoad())

    def acquire(self, pool: str, sequences: int, prompt_tokens: int = 0, max_new_tokens: int = 0,
                tpot_target_ms: float | None = None, replica: str = "") -> None:
        """``sequences`` sent to ``pool`` (its ``replica`` when the router chose one), each of
        ``prompt_tokens`` owed ``max_new_tokens`` (``tpot_target_ms``: the TPOT the router promised
        them, ``Decision.promised_tpot_ms``)."""
        now = self._clock()
        for load in self._loads(pool, replica):
            load.sent(sequences, prompt_tokens, max_new_tokens, tpot_target_ms, now)

    def first_tokens(self, pool: str, sequences: int, prompt_tokens: int = 0, replica: str = "") -> None:
        """Their first tokens arrived: the prefills are done."""
        for load in self._loads(pool, replica):
            load.first_tokens(sequences, prompt_tokens)

    def release(self, pool: str, sequences: int, prompt_tokens: int = 0, max_new_tokens: int = 0,
                tpot_target_ms: float | None = None, prefilled: bool = True, replica: str = "") -> None:
        """They finished (or failed; before their first tokens when not ``prefilled``)."""
        rec = self.pools[pool]
        for load in self._loads(pool, replica):
            load.done(sequences, max_new_tokens, tpot_target_ms)
            if not prefilled:
                load.first_tokens(sequences, prompt_tokens)

    def record_stats(self, pool: str, stats: ReplicaStats) -> None:
        rec = self.pools[pool]
        # Finished requests carry counters only; polls add power and provenance: merge.
        rec.replicas[stats.replica] = stats.merged_over(rec.replicas.get(stats.replica))
        rec.unreachable.discard(stats.replica)
        rec.last_ok = rec.heard[stats.replica] = self._clock()
        rec.last_error = None
        rec.failed_polls = 0
        rec.down = False

    def record_failure(self, pool: str, error: str) -> None:
        """A failed poll; the one that makes ``down_after_failed_polls`` in a row takes the pool down."""
        rec = self.pools[pool]
        rec.last_error = error
        rec.failed_polls += 1
        if rec.down or rec.failed_polls < self.down_after_failed_polls:
            return
        rec.down = True
        # Its replicas' last figures are gone with them: no load is left on the pool.
        rec.replicas = {
            k: dataclasses.replace(r, running=0, waiting=0, kv_cache_usage=0.0) for k, r in rec.replicas.items()
        }
        for listener in self._down_listeners:
            listener(pool)

    def on_down(self, listener: Callable[[str], None]) -> None:
        self._down_listeners.append(listener)

    def healthy(self, model: str | None = None) -> dict[str, bool]:
        """Routable pools; ejection is ignored for ``model`` when it would leave it none."""
        now = self._clock()
        ready = {name: rec.ready(now) for name, rec in self.pools.items()}
        out = {name: r and not self.outliers.ejected(name) for name, r in ready.items()}
        if model is not None:
            serving = [n for n, rec in self.pools.items() if model in rec.spec.models and ready[n]]
            if serving and not any(out[n] for n in serving):
                out.update({n: True for n in serving})
        return out

    def starting(self, model: str) -> list[str]:
        """The pools serving ``model`` that have not answered yet."""
        return [n for n, rec in self.pools.items() if model in rec.spec.models and rec.starting()]

    def snapshot(self, model: str | None = None) -> list[PoolState]:
        """What the router is offered: a pool with two or more replicas it can reach, one state per replica
        (running and waiting from its own polls, the rest this gateway's own count of what it sent there);
        any other pool, one state for the whole pool."""
        healthy = self.healthy(model)
        now = self._clock()
        out = []
        for name, rec in self.pools.items():
            reachable = [] if rec.down else [
                (rid, st) for rid, st in rec.replicas.items()
                if st.endpoint and rid not in rec.unreachable and now - rec.heard[rid] < STALE_AFTER_S
            ]  # a replica not heard from for STALE_AFTER_S is gone (Serve replaced it, its node died)
            if len(reachable) < 2:
                usage = [r.kv_cache_usage for r in rec.replicas.values()]
                out.append(self._state(
                    rec, healthy[name], rec.sent, now, running=int(rec.total("running")),
                    waiting=int(rec.total("waiting")), replicas=rec.live_replicas(),
                    kv_free=1.0 - (sum(usage) / len(usage) if usage else 0.0),
                ))
                continue
            for rid, st in reachable:
                out.append(self._state(
                    rec, healthy[name], rec.sent_to.get(rid) or _NOTHING_SENT, now, running=st.running,
                    waiting=st.waiting, replicas=1, kv_free=1.0 - st.kv_cache_usage, replica=rid,
                ))
        return out

    def _state(self, rec: PoolRecord, healthy: bool, sent: SentLoad, now: float, *, running: int, waiting: int,
               replicas: int, kv_free: float, replica: str = "") -> PoolState:
        s = rec.spec
        return PoolState(
            name=s.name,
            hardware=s.hardware,
            models=tuple(s.models),
            healthy=healthy,
            in_flight=sent.in_flight,
            running=running,
            waiting=waiting,
            capacity=s.max_ongoing_requests * replicas,
            replicas=replicas,
            kv_free=kv_free,
            max_seq_len=rec.max_seq_len(),
            batch_buckets=tuple(rec.hardware.batch_buckets or ()),
            price_per_hour=rec.price_per_hour,
            emulated=s.emulated,
            capabilities=s.capabilities(),
            profile=self.profiles.get(s.name),
            prefilling=sent.prefilling,
            prefill_tokens=sent.prefill_tokens,
            decode_tokens=sent.decode_tokens,
            prompt_rate=sent.prompts.rate(now),
            arrival_rate=sent.arrivals.rate(now),
            max_batch=rec.slots,
            prefill_chunk=rec.prefill_chunk,
            dynamic_watts=rec.hardware.peak_watts_replica - rec.hardware.idle_watts_replica,
            tightest_tpot_ms=sent.targets.tightest(),
            replica=replica,
        )

    def unreachable(self, pool: str, replica: str) -> None:
        """The relay could not reach ``replica``: it is not offered to the router again until it answers."""
        rec = self.pools.get(pool)
        if rec is not None:
            rec.unreachable.add(replica)

    def describe(self) -> list[PoolView]:
        """Pool summaries for ``GET /v1/fleet`` and load-test energy accounting."""
        now = self._clock()
        healthy = self.healthy()
        out = []
        for name, rec in self.pools.items():
            reps = list(rec.replicas.values())
            out.append(
                PoolView(
                    name=name,
                    hardware=rec.spec.hardware,
                    engine=rec.spec.engine,
                    model=rec.spec.model,
                    emulated=rec.spec.emulated,
                    models=list(rec.spec.models),
                    replicas=rec.live_replicas(),
                    healthy=healthy[name],
                    ready=rec.ready(now),
                    starting=rec.starting(),
                    **self.outliers.describe(name),
                    in_flight=rec.in_flight,
                    running=int(rec.total("running")),
                    waiting=int(rec.total("waiting")),
                    capacity=rec.spec.max_ongoing_requests * rec.live_replicas(),
                    max_seq_len=rec.max_seq_len(),
                    price_per_hour=rec.price_per_hour,
                    output_tokens=int(rec.total("output_tokens_total")),
                    prompt_tokens=int(rec.total("prompt_tokens_total")),
                    energy_joules=rec.total("energy_attributed_j"),
                    energy_total_joules=rec.total("energy_total_j"),
                    watts=rec.total("watts"),
                    power_source=(reps[0].power_source if reps else None) or rec.spec.power.source,
                    power_provenance=reps[0].power_provenance if reps else None,
                    last_error=rec.last_error,
                )
            )
        return out
