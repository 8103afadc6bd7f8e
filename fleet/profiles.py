"""Modelled efficiency profiles: a pool's grid filled from its hardware model.

Each cell is the steady state of the continuous batcher
(``workers.emulation.batcher``) at that batch, computed in closed form from
the same roofline step costs the batcher charges, rather than by stepping it
(a 4-pool fleet takes milliseconds, so the live gateway can call this at
start). Steady state at batch ``b`` for sequences of ``p`` prompt and ``n``
output tokens: a cycle of ``n`` steps emits ``b × n`` tokens; every step but
one per sequence is a decode of all ``b`` at the mean context
``p + (n - 1) / 2``; the ``b`` prefills run ``k = max(1, b / n)`` prompts at
a time. A cell of sequence bucket ``s`` uses ``p = s × prompt_share``,
``n = s - p`` (the bucket's upper edge: conservative). A batch the KV cache
or ``max_batch`` cannot hold is clamped to the largest that fits.

``j_per_token`` is the energy above the replica's idle draw per output token
(``attributed``): the same quantity calibration and online learning measure
(``energy_joules`` in ``/v1/fleet``), and the marginal cost routing controls,
since an idle pool draws its idle power whether or not it gets the request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS
from routing.profile import Cell, EfficiencyProfile
from workers.hardware import (
    CatalogError,
    HardwareModel,
    ModelSpec,
    decode_cost,
    get_hardware,
    get_model,
    kv_capacity_tokens,
    max_sequence_tokens,
    power_watts,
    prefill_cost,
)
from workers.spec import PoolSpec


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """One replica in steady state at ``batch`` running (prompt, output) sequences."""

    batch: int  # after clamping to what fits
    ttft_s: float
    tpot_s: float
    throughput_tok_s: float
    watts: float
    j_per_token: float  # whole draw while busy
    attributed_j_per_token: float  # above idle


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """What a pool's engine runs: enough to build a batcher or a profile."""

    hardware: HardwareModel
    model: ModelSpec
    max_batch: int
    max_model_len: int  # the tightest of engine args, model, compiled limit, KV
    price_per_hour: float  # per replica


def engine_figures(spec: PoolSpec) -> EngineFigures | None:
    """Resolve a pool spec to hardware and model entries; None when its
    model is not a catalog key (a real engine loading a path: no model)."""
    try:
        model = get_model(spec.model)
    except CatalogError:
        return None
    hw = get_hardware(spec.hardware)
    args = spec.engine_args
    max_batch = int(args.get("max_batch") or args.get("max_num_seqs") or spec.max_ongoing_requests)
    if hw.batch_buckets:
        max_batch = min(max_batch, hw.batch_buckets[-1])
    limit = max_sequence_tokens(hw, model)
    if args.get("max_model_len"):
        limit = min(limit, int(args["max_model_len"]))
    price = spec.price_per_hour if spec.price_per_hour is not None else hw.price_per_hour_usd
    return EngineFigures(hw, model, max_batch, limit, price)


def operating_point(hw: HardwareModel, model: ModelSpec, batch: int, prompt: int, output: int,
                    max_batch: int | None = None) -> OperatingPoint | None:
    """The steady state (see module doc); None when the sequence cannot run."""
    total = prompt + output
    if prompt < 1 or output < 1 or total > max_sequence_tokens(hw, model):
        return None
    b = min(batch, max_batch or batch, kv_capacity_tokens(hw, model) // total)
    if hw.batch_buckets:
        b = min(b, hw.batch_buckets[-1])
    k = max(1, round(b / output))
    pre = prefill_cost(hw, model, [prompt] * k)
    dec = decode_cost(hw, model, b, round(b * (prompt + (output - 1) / 2)), total - 1)
    cycle = (output - 1) * dec.duration_s + b / k * pre.duration_s
    energy = ((output - 1) * dec.duration_s * power_watts(hw, dec.utilisation)
              + b / k * pre.duration_s * power_watts(hw, pre.utilisation))
    tokens = b * output
    first = pre.duration_s if k == 1 else prefill_cost(hw, model, [prompt]).duration_s
    return OperatingPoint(
        batch=b,
        ttft_s=first + (1.5 * dec.duration_s if b > 1 else 0.0),
        tpot_s=cycle / output,
        throughput_tok_s=tokens / cycle,
        watts=energy / cycle,
        j_per_token=energy / tokens,
        attributed_j_per_token=(energy - hw.idle_watts_replica * cycle) / tokens,
    )


def modelled_profile(
    pool: str,
    served_model: str,
    figures: EngineFigures,
    *,
    batch_buckets: Iterable[int] = DEFAULT_BATCH_BUCKETS,
    seq_buckets: Iterable[int] = DEFAULT_SEQ_BUCKETS,
    prompt_share: float = 0.5,
) -> EfficiencyProfile:
    """A profile of ``modelled`` cells for ``pool`` serving ``served_model``."""
    f = figures
    prof = EfficiencyProfile(pool, f.hardware.name, served_model, batch_buckets=batch_buckets,
                             seq_buckets=seq_buckets, created=datetime.now(timezone.utc))
    for s in prof.seq_buckets:
        prompt = max(1, int(s * prompt_share))
        if s > f.max_model_len:
            prof.put(Cell(prof.batch_buckets[0], s, feasible=False))
            continue
        for b in prof.batch_buckets:
            op = operating_point(f.hardware, f.model, b, prompt, s - prompt, f.max_batch)
            if op is None or op.batch < 1:
                prof.put(Cell(b, s, feasible=False))
                continue
            prof.put(Cell(
                b, s,
                throughput_tok_s=op.throughput_tok_s,
                ttft_ms=op.ttft_s * 1e3,
                tpot_ms=op.tpot_s * 1e3,
                watts=op.watts,
                j_per_token=op.attributed_j_per_token,
                cost_per_mtok=f.price_per_hour / 3600 / op.throughput_tok_s * 1e6,
            ))
    return prof


def batch_ladder(max_batch: int) -> list[int]:
    """Powers of two below ``max_batch``, then ``max_batch``: the batches sizing code tries."""
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return out + [max_batch]


def fleet_profiles(pools: Iterable[PoolSpec]) -> dict[str, EfficiencyProfile]:
    """Modelled profiles by pool name, for the first served model of every pool
    whose model the hardware catalog knows (what the gateway uses at start)."""
    out = {}
    for spec in pools:
        figures = engine_figures(spec)
        if figures is not None:
            out[spec.name] = modelled_profile(spec.name, spec.models[0], figures)
    return out


def observe_finished(profile: EfficiencyProfile, batch: int, seq_len: int, *, ttft_s: float,
                     e2e_s: float, output_tokens: int, energy_j: float | None) -> None:
    """Fold one finished request into ``profile`` (online learning): TTFT,
    TPOT and, when known, J per output token."""
    metrics = {"ttft_ms": ttft_s * 1e3}
    if output_tokens > 1:
        metrics["tpot_ms"] = (e2e_s - ttft_s) / (output_tokens - 1) * 1e3
    if energy_j is not None and output_tokens > 0:
        metrics["j_per_token"] = energy_j / output_tokens
    profile.observe(batch, seq_len, **metrics)
