"""What the hardware model predicts for one calibration cell, in virtual time.

``predict(hardware, model, batch, prompt, output)`` puts ``batch`` identical
sequences (``prompt`` tokens in, ``output`` tokens out) into a
:class:`~workers.emulation.batcher.ContinuousBatcher` at once, steps it until
every sequence finished and sums the step durations and energies. It is what
an emulated pool would do with no real-time driver, no relay and no gateway
in between, so a calibrated cell divided by its prediction measures that
overhead (for an emulated pool) or the model's error (for a real one).

Pure: no clock, no I/O; a few milliseconds for a 256-sequence batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.emulation.batcher import ContinuousBatcher, Sequence
from workers.hardware.catalog import get_model, model_keys, resolve_hardware, resolve_model
from workers.hardware.model import HardwareModel, ModelSpec


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's figures for one cell (per replica)."""

    batch: int
    prompt_tokens: int
    output_tokens: int  # per sequence
    duration_s: float  # first admission to last token
    ttft_s: float  # mean over sequences: start to first token
    tpot_s: float  # mean over sequences: (last - first token) / (output - 1); 0 for output 1
    energy_j: float  # whole replica, idle draw included
    attributed_energy_j: float  # above idle
    steps: int

    @property
    def total_output_tokens(self) -> int:
        return self.batch * self.output_tokens

    @property
    def throughput_tok_s(self) -> float:
        return self.total_output_tokens / self.duration_s

    @property
    def j_per_token(self) -> float:
        """Attributed joules per output token (what the profiles hold)."""
        return self.attributed_energy_j / self.total_output_tokens

    @property
    def watts(self) -> float:
        """Mean replica draw over the cell, idle included."""
        return self.energy_j / self.duration_s


def predict(
    hardware: str | HardwareModel,
    model: str | ModelSpec,
    batch: int,
    prompt: int,
    output: int,
    *,
    max_batch: int | None = None,
    max_model_len: int | None = None,
) -> Prediction:
    """Run ``batch`` sequences of ``prompt`` + ``output`` tokens through the batcher.

    ``max_batch`` is the replica's batch limit (default ``batch``, clamped to a
    static-shape chip's largest compiled batch); sequences past it wait, as
    they would on the pool. Raises :class:`workers.errors.ContextLengthExceeded`
    when one sequence cannot run on the replica at all.
    """
    if batch < 1 or prompt < 1 or output < 1:
        raise ValueError(f"batch, prompt and output must be >= 1, got {batch}, {prompt}, {output}")
    hw = resolve_hardware(hardware)
    spec = resolve_model(model)
    limit = max_batch or batch
    if hw.batch_buckets is not None:
        limit = min(limit, hw.batch_buckets[-1])
    batcher = ContinuousBatcher(hw, spec, limit, max_model_len)
    for i in range(batch):
        batcher.add(Sequence(i, prompt, output))
    t = energy = attributed = 0.0
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    steps = 0
    while (step := batcher.step()) is not None:
        t += step.duration_s
        energy += step.energy_j
        attributed += step.attributed_energy_j
        steps += 1
        for seq_id in step.first_token_ids:
            first[seq_id] = t
        for seq_id in step.finished_ids:
            last[seq_id] = t
    ttft = sum(first.values()) / batch
    tpot = 0.0 if output == 1 else sum(last[i] - first[i] for i in range(batch)) / batch / (output - 1)
    return Prediction(batch, prompt, output, t, ttft, tpot, energy, attributed, steps)


def model_key_for(served_name: str) -> str | None:
    """The catalog model key whose key or ``name`` is ``served_name`` (first match), else None.

    Pools list the names clients ask for (``meta-llama/Llama-3.1-8B-Instruct``);
    the catalog keys its entries ``llama-3.1-8b`` and records that name.
    """
    keys = model_keys()
    if served_name in keys:
        return served_name
    for key in keys:
        if get_model(key).name == served_name:
            return key
    return None
