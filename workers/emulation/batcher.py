"""A continuous batcher in virtual time, driven by the roofline model.

The same object backs the real-time emulated engine and the discrete-event
simulator, so a step costs O(admitted + finished) Python work plus one C-level
copy of the running ids.

Model: first come, first served; a waiting sequence is admitted when the batch
has a free slot and the KV cache can hold its whole ``prompt + max_new``
tokens (reserved up front, so nothing is ever preempted). Admitted sequences
are prefilled in the step that admits them and get their first token from it;
every other running sequence decodes one token per step (no chunked prefill).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from workers.errors import ContextLengthExceeded, InvalidRequest
from workers.hardware import roofline
from workers.hardware.model import HardwareModel, ModelSpec


@dataclass(frozen=True, slots=True)
class Sequence:
    """One sequence to generate: ``max_new_tokens`` are always all produced."""

    id: Hashable
    prompt_tokens: int
    max_new_tokens: int


@dataclass(slots=True)
class StepResult:
    """What one engine step did, in virtual time (a value, never changed: not ``frozen`` only because
    a frozen dataclass's ``__init__`` is slow, and the simulator makes one per engine step)."""

    duration_s: float
    energy_j: float  # whole replica, idle draw included
    attributed_energy_j: float  # above the replica's idle draw
    batch_size: int  # sequences that got a token this step
    padded_batch: int  # what a static-shape engine computed
    first_token_ids: tuple[Hashable, ...]
    token_ids: tuple[Hashable, ...]  # every id that emitted a token (incl. first tokens)
    finished_ids: tuple[Hashable, ...]


@dataclass(slots=True)
class _Running:
    offset: int  # prompt_tokens - admission step: context at step s is offset + s
    reserved: int  # KV tokens held until the sequence leaves
    active: bool = True


class ContinuousBatcher:
    """Continuous batching of sequences on one replica of ``hw`` serving ``model``."""

    def __init__(
        self,
        hw: HardwareModel,
        model: ModelSpec,
        max_batch: int,
        max_model_len: int | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if hw.batch_buckets is not None and max_batch > hw.batch_buckets[-1]:
            raise ValueError(
                f"max_batch {max_batch} exceeds {hw.name}'s largest compiled batch "
                f"bucket {hw.batch_buckets[-1]}"
            )
        self.hw = hw
        self.model = model
        self.max_batch = max_batch
        limit = roofline.max_sequence_tokens(hw, model)
        self.max_model_len = min(limit, max_model_len) if max_model_len else limit
        self._kv_capacity = roofline.kv_capacity_tokens(hw, model)
        self._idle_watts = hw.idle_watts_replica
        self._dynamic_watts = hw.peak_watts_replica - hw.idle_watts_replica
        self._coster = roofline.StepCoster(hw, model)
        self._step = 0
        self._waiting: OrderedDict[Hashable, Sequence] = OrderedDict()
        self._running: dict[Hashable, _Running] = {}
        self._finish_at: dict[int, list[tuple[Hashable, _Running]]] = {}
        self._offset_sum = 0
        self._reserved = 0
        # Max-heap of offsets (negated) for static shapes; the counter breaks ties.
        self._offsets: list[tuple[int, int, _Running]] = []
        self._tiebreak = itertools.count()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV cache reserved by running sequences."""
        return self._reserved / self._kv_capacity if self._kv_capacity else 1.0

    def has_work(self) -> bool:
        return bool(self._running or self._waiting)

    def add(self, seq: Sequence) -> None:
        """Queue ``seq``; reject it at once if it can never run here."""
        if seq.prompt_tokens < 1 or seq.max_new_tokens < 1:
            raise InvalidRequest("a sequence needs at least one prompt and one new token")
        if seq.id in self._waiting or seq.id in self._running:
            raise InvalidRequest(f"sequence id {seq.id!r} is already queued")
        total = seq.prompt_tokens + seq.max_new_tokens
        if total > self.max_model_len:
            raise ContextLengthExceeded(
                f"{seq.prompt_tokens} prompt + {seq.max_new_tokens} new tokens = {total} "
                f"exceeds the {self.max_model_len}-token limit of {self.model.name} "
                f"on {self.hw.name}"
            )
        self._waiting[seq.id] = seq

    def remove(self, seq_id: Hashable) -> bool:
        """Drop a waiting or running sequence (a cancelled request). True if it was here."""
        if self._waiting.pop(seq_id, None) is not None:
            return True
        state = self._running.pop(seq_id, None)
        if state is None:
            return False
        self._release(state)
        return True

    def step(self) -> StepResult | None:
        """Run one engine step; ``None`` when there is nothing to do."""
        if not self._running and not self._waiting:
            return None
        now = self._step
        decoding = len(self._running)
        context = self._offset_sum + decoding * now
        longest = self._longest_offset() + now if decoding and self._offsets else None
        prompts = self._admit(now)

        decode = self._coster.decode(decoding, context, longest)
        cost = roofline.combine(self._coster.prefill(prompts), decode) if prompts else decode
        token_ids = tuple(self._running)
        finished = self._finish(now)
        self._step = now + 1

        util = cost.utilisation if cost.utilisation < 1.0 else 1.0
        energy = (self._idle_watts + self._dynamic_watts * util) * cost.duration_s  # roofline.power_watts
        return StepResult(
            duration_s=cost.duration_s,
            energy_j=energy,
            attributed_energy_j=energy - self._idle_watts * cost.duration_s,
            batch_size=len(token_ids),
            padded_batch=roofline.padded_batch(self.hw, len(token_ids)),
            first_token_ids=token_ids[decoding:],
            token_ids=token_ids,
            finished_ids=finished,
        )

    def _admit(self, now: int) -> list[int]:
        prompts: list[int] = []
        while self._waiting and len(self._running) < self.max_batch:
            seq = next(iter(self._waiting.values()))
            need = seq.prompt_tokens + seq.max_new_tokens
            if self._reserved + need > self._kv_capacity:
                break  # head-of-line: keep arrival order
            del self._waiting[seq.id]
            offset = seq.prompt_tokens - now
            state = _Running(offset, need)
            self._running[seq.id] = state
            self._offset_sum += offset
            self._reserved += need
            if self.hw.static_shapes:
                heapq.heappush(self._offsets, (-offset, next(self._tiebreak), state))
            self._finish_at.setdefault(now + seq.max_new_tokens - 1, []).append((seq.id, state))
            prompts.append(seq.prompt_tokens)
        return prompts

    def _finish(self, now: int) -> tuple[Hashable, ...]:
        done = []
        for seq_id, state in self._finish_at.pop(now, ()):
            if self._running.get(seq_id) is state:  # not cancelled meanwhile
                del self._running[seq_id]
                self._release(state)
                done.append(seq_id)
        return tuple(done)

    def _release(self, state: _Running) -> None:
        state.active = False
        self._offset_sum -= state.offset
        self._reserved -= state.reserved

    def _longest_offset(self) -> int:
        """Largest offset among running sequences (lazily dropping departed ones)."""
        heap = self._offsets
        while heap:
            if heap[0][2].active:
                return -heap[0][0]
            heapq.heappop(heap)
        return 0
