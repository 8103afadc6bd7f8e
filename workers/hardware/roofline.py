"""Roofline step times, power and capacity of a model on a hardware replica.

Pure functions, cheap enough for a discrete-event simulator. See
``docs/hardware.md`` for the equations and their calibration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from workers.hardware.model import HardwareModel, ModelSpec

#: Share of device memory the engine may use (weights + KV cache); the rest
#: is activations and runtime, as with vLLM's ``gpu_memory_utilization=0.9``.
MEMORY_FRACTION = 0.9


@dataclass(frozen=True, slots=True)
class StepCost:
    """How long one engine step takes and how hard it drives the chip."""

    duration_s: float
    utilisation: float  # 0..1 of the dynamic power range


def padded_batch(hw: HardwareModel, batch: int) -> int:
    """Batch size the hardware computes: the smallest bucket >= ``batch`` on static shapes."""
    return _bucket(hw.batch_buckets, batch, "batch")


def padded_seq(hw: HardwareModel, tokens: int) -> int:
    """Sequence length the hardware computes: the smallest seq bucket >= ``tokens``."""
    return _bucket(hw.seq_buckets, tokens, "sequence length")


def _bucket(buckets: tuple[int, ...] | None, n: int, what: str) -> int:
    if buckets is None or n == 0:
        return n
    for bucket in buckets:
        if bucket >= n:
            return bucket
    raise ValueError(f"{what} {n} exceeds the largest compiled bucket {buckets[-1]}")


def kv_capacity_tokens(hw: HardwareModel, model: ModelSpec) -> int:
    """KV-cache tokens that fit beside the weights (0 if the weights do not fit)."""
    free = hw.memory_bytes * MEMORY_FRACTION - model.weight_bytes
    return max(0, int(free // model.kv_bytes_per_token))


def max_sequence_tokens(hw: HardwareModel, model: ModelSpec) -> int:
    """Longest prompt + output one sequence may reach on this replica.

    The tightest of the model's context, the compiled limit of a static-shape
    NPU, and the KV cache that memory leaves.
    """
    limits = [model.max_context, kv_capacity_tokens(hw, model)]
    if hw.max_seq_len is not None:
        limits.append(hw.max_seq_len)
    return min(limits)


def is_feasible(hw: HardwareModel, model: ModelSpec, total_tokens: int) -> bool:
    """Whether a sequence of ``total_tokens`` (prompt + output) can run here at all."""
    return 0 < total_tokens <= max_sequence_tokens(hw, model)


def power_watts(hw: HardwareModel, utilisation: float) -> float:
    """Replica power draw at ``utilisation`` (0..1) of its dynamic range."""
    util = min(1.0, max(0.0, utilisation))
    return hw.idle_watts_replica + (hw.peak_watts_replica - hw.idle_watts_replica) * util


class StepCoster:
    """Step costs of one model on one hardware replica, its constants worked out once.

    The emulated engine and the simulator cost every engine step (the
    simulator's inner loop); the module's functions below are the same
    equations for one-off use.
    """

    __slots__ = ("hw", "model", "_compute_rate", "_memory_rate", "_overhead_s", "_memory_share", "_flops_per_token",
                 "_attention", "_weight_bytes", "_kv_bytes", "_static")  # fmt: skip

    def __init__(self, hw: HardwareModel, model: ModelSpec):
        self.hw, self.model = hw, model
        self._compute_rate = hw.peak_flops(model.bytes_per_param) * hw.mfu
        self._memory_rate = hw.bandwidth_bytes_s * hw.mbu
        self._overhead_s = hw.step_overhead_ms / 1e3
        self._memory_share = hw.memory_power_share
        self._flops_per_token = 2 * model.params
        self._attention = model.attention_flops_per_context_token
        self._weight_bytes = model.weight_bytes
        self._kv_bytes = model.kv_bytes_per_token
        self._static = hw.static_shapes

    def step(self, flops: float, nbytes: float) -> StepCost:
        """Roofline time of one step moving ``nbytes`` and computing ``flops``."""
        compute_s = flops / self._compute_rate
        memory_s = nbytes / self._memory_rate
        duration = max(compute_s, memory_s) + self._overhead_s
        util = (compute_s + self._memory_share * memory_s) / duration
        return StepCost(duration, min(1.0, util))

    def prefill(self, prompt_tokens: Iterable[int]) -> StepCost:
        """One step that prefills a batch of prompts (compute-bound for real prompts).

        ``2 * params`` FLOPs per token plus causal attention (half of
        ``4 * layers * hidden * p**2``). Static shapes pay for each prompt's
        sequence bucket; NPU engines prefill one prompt per graph call, so the
        batch bucket does not apply here.
        """
        lengths = list(prompt_tokens) if self.hw.seq_buckets is None else [padded_seq(self.hw, p) for p in prompt_tokens]
        if not lengths:
            return StepCost(0.0, 0.0)
        tokens = sum(lengths)
        attention = self._attention * sum(p * p for p in lengths) / 2
        flops = self._flops_per_token * tokens + attention
        nbytes = self._weight_bytes + self._kv_bytes * tokens
        return self.step(flops, nbytes)

    def decode(self, batch: int, context_tokens: int, max_context: int | None = None) -> StepCost:
        """One decode step: every sequence of the batch emits one token.

        ``context_tokens`` is the sum of the sequences' contexts. Memory reads the
        weights once plus every sequence's KV cache. A static-shape NPU runs one
        compiled graph per (batch bucket, sequence bucket): every slot pays for
        the bucket of the longest context, ``max_context``.
        """
        if batch == 0:
            return StepCost(0.0, 0.0)
        if self._static:
            longest = max_context if max_context is not None else math.ceil(context_tokens / batch)
            batch = padded_batch(self.hw, batch)
            context_tokens = batch * padded_seq(self.hw, longest)
        flops = self._flops_per_token * batch + self._attention * context_tokens
        nbytes = self._weight_bytes + self._kv_bytes * context_tokens
        return self.step(flops, nbytes)


def step_cost(hw: HardwareModel, model: ModelSpec, flops: float, nbytes: float) -> StepCost:
    """Roofline time of one step moving ``nbytes`` and computing ``flops``."""
    return StepCoster(hw, model).step(flops, nbytes)


def prefill_cost(hw: HardwareModel, model: ModelSpec, prompt_tokens: Iterable[int]) -> StepCost:
    """One prefill step (:meth:`StepCoster.prefill`)."""
    return StepCoster(hw, model).prefill(prompt_tokens)


def decode_cost(
    hw: HardwareModel,
    model: ModelSpec,
    batch: int,
    context_tokens: int,
    max_context: int | None = None,
) -> StepCost:
    """One decode step (:meth:`StepCoster.decode`)."""
    return StepCoster(hw, model).decode(batch, context_tokens, max_context)


def combine(first: StepCost, second: StepCost) -> StepCost:
    """Two phases run back to back in one step (prefill, then decode)."""
    duration = first.duration_s + second.duration_s
    if duration == 0:
        return first
    busy = first.utilisation * first.duration_s + second.utilisation * second.duration_s
    util = busy / duration
    return StepCost(duration, util)
