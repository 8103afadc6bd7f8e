"""Snapshots of pools as the router sees them, and the rate meter that fills one field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # avoid an import cycle at run time
    from routing.profile import EfficiencyProfile


@dataclass(slots=True)
class PoolState:
    """One pool at one instant (a value: never changed once built; not ``frozen`` only because a frozen
    dataclass's ``__init__`` costs the simulator, which builds one per pool per arrival, about 7 %).

    The gateway counts ``in_flight`` (sequences it has sent and not yet seen
    finish) exactly; ``running``/``waiting``/``kv_free`` come from polling the
    pool's replicas and may be a poll interval old.

    The queue fields feed the latency predictor (``routing.predictor``) and
    are counted by whoever sends the work (the gateway, the simulator):
    ``prefilling`` sequences sent but without a first token yet and their
    ``prefill_tokens`` (prompt tokens), ``decode_tokens`` the output tokens
    still owed to sequences in flight (their ``max_new_tokens`` until done),
    ``prompt_rate`` prompt tokens and ``arrival_rate`` sequences per second
    recently sent (``RateMeter``); ``tightest_tpot_ms`` the tightest TPOT
    target promised to a sequence in flight (``Decision.promised_tpot_ms``,
    kept by ``TargetTracker``).
    ``max_batch`` is one replica's batch slots (0: ``capacity / replicas``);
    ``prefill_chunk`` the engine's per-step prefill token budget (0: whole
    prompts are prefilled in the step that admits them, the emulated engine);
    ``dynamic_watts`` one replica's peak minus idle draw (what a compute-bound
    prefill adds; 0: prefill energy unknown).

    A pool of several replicas is offered to the router one state per
    replica (``replica`` set, every count that replica's own), so a decision
    names the replica too: the router can keep tight traffic on one replica
    and pack another with relaxed traffic, which a pool-wide state (load
    spread evenly, the tightest promise of any replica) cannot express.
    """

    name: str
    hardware: str
    models: tuple[str, ...]
    healthy: bool = True
    in_flight: int = 0
    running: int = 0
    waiting: int = 0
    capacity: int = 1  # sequences the pool accepts at once (all replicas)
    replicas: int = 1  # engines sharing the load; a request joins one of them
    kv_free: float = 1.0  # fraction of KV cache free, 0..1
    max_seq_len: int = 1 << 30  # longest prompt+output the pool can run
    batch_buckets: tuple[int, ...] = ()  # static batch sizes (NPUs), empty = dynamic
    price_per_hour: float = 0.0
    emulated: bool = False
    profile: "EfficiencyProfile | None" = field(default=None, compare=False)
    prefilling: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    prompt_rate: float = 0.0
    arrival_rate: float = 0.0
    max_batch: int = 0
    prefill_chunk: int = 0
    dynamic_watts: float = 0.0
    capabilities: frozenset[str] = frozenset()  # request features its engine honours (RequestShape.features)
    tightest_tpot_ms: float | None = None  # the tightest TPOT promised to a sequence in flight (``TargetTracker``)
    replica: str = ""  # the one replica of pool ``name`` this describes (``replicas`` 1); "": the whole pool

    load: int = field(init=False, repr=False, compare=False)  # sequences busy with, as best known
    slots: int = field(init=False, repr=False, compare=False)  # batch slots of one replica

    def __post_init__(self) -> None:
        # read several times per decision: worked out once
        busy = self.running + self.waiting
        self.load = self.in_flight if self.in_flight > busy else busy
        self.slots = self.max_batch or max(1, self.capacity // max(self.replicas, 1))

    @property
    def label(self) -> str:
        return replica_label(self.name, self.replica)

    @property
    def saturated(self) -> bool:
        return self.load >= self.capacity

    def serves(self, model: str) -> bool:
        return model in self.models


def replica_label(pool: str, replica: str) -> str:
    """How reasons name a target: ``pool``, or ``pool[replica]`` for one replica of it."""
    return f"{pool}[{replica}]" if replica else pool


class RateMeter:
    """An exponentially decaying rate (amount per second) with time constant
    ``tau_s``; the caller passes the clock's reading (pure, no clock of its own)."""

    __slots__ = ("tau_s", "_rate", "_at")

    def __init__(self, tau_s: float = 10.0):
        self.tau_s = tau_s
        self._rate = 0.0
        self._at = 0.0

    def add(self, amount: float, now: float) -> None:
        self._rate = self.rate(now) + amount / self.tau_s
        self._at = now

    def rate(self, now: float) -> float:
        if not self._rate:
            return 0.0
        return self._rate * math.exp(-(now - self._at) / self.tau_s) if now > self._at else self._rate


class TargetTracker:
    """The tightest TPOT target among the sequences in flight that were
    promised one (counts per distinct target)."""

    __slots__ = ("_counts", "_min")

    def __init__(self):
        self._counts: dict[float, int] = {}
        self._min: float | None = None

    def add(self, target: float | None, sequences: int = 1) -> None:
        """``sequences`` sent with ``target`` promised (None: no promise, nothing kept)."""
        if target is None:
            return
        self._counts[target] = self._counts.get(target, 0) + sequences
        if self._min is None or target < self._min:
            self._min = target

    def remove(self, target: float | None, sequences: int = 1) -> None:
        if target is None or target not in self._counts:
            return
        left = self._counts[target] - sequences
        if left > 0:
            self._counts[target] = left
            return
        del self._counts[target]
        if target == self._min:
            self._min = min(self._counts) if self._counts else None

    def tightest(self) -> float | None:
        return self._min


class SentLoad:
    """What a sender (the gateway, the simulator) has sent one pool or one replica and
    not yet seen finish: the queue fields of ``PoolState`` it counts itself. The caller
    passes the clock's reading (pure, no clock of its own)."""

    __slots__ = ("in_flight", "prefilling", "prefill_tokens", "decode_tokens", "prompts", "arrivals",
                 "targets")

    def __init__(self):
        self.in_flight = 0
        self.prefilling = 0  # sequences without a first token yet
        self.prefill_tokens = 0  # their prompt tokens
        self.decode_tokens = 0  # output tokens (max_new_tokens) owed to sequences in flight
        self.prompts = RateMeter()  # prompt tokens sent per second
        self.arrivals = RateMeter()  # sequences sent per second
        self.targets = TargetTracker()  # TPOT targets promised to those in flight

    def sent(self, sequences: int, prompt_tokens: int, max_new_tokens: int, tpot_target_ms: float | None,
             now: float) -> None:
        """``sequences`` sent, each of ``prompt_tokens`` owed ``max_new_tokens``, promised ``tpot_target_ms``."""
        self.in_flight += sequences
        self.prefilling += sequences
        self.prefill_tokens += sequences * prompt_tokens
        self.decode_tokens += sequences * max_new_tokens
        self.targets.add(tpot_target_ms, sequences)
        self.prompts.add(sequences * prompt_tokens, now)
        self.arrivals.add(sequences, now)

    def first_tokens(self, sequences: int, prompt_tokens: int) -> None:
        """Their first tokens arrived: the prefills are done."""
        self.prefilling -= sequences
        self.prefill_tokens -= sequences * prompt_tokens

    def done(self, sequences: int, max_new_tokens: int, tpot_target_ms: float | None) -> None:
        """They finished (a caller whose sequences failed before their first tokens calls ``first_tokens`` too)."""
        self.in_flight -= sequences
        self.decode_tokens -= sequences * max_new_tokens
        self.targets.remove(tpot_target_ms, sequences)
