"""What a pool costs per token once filled to the batch its latency target allows.

A pool's dynamic energy per step grows far slower than its batch, so its
joules per token fall as the batch fills (an H100 step at batch 64 costs
2.5 × a batch-1 step and yields 64 tokens). A fleet spends the fewest joules
when its traffic is packed onto the pools that are cheapest *when full*, as
full as their latency targets allow, with the rest idle (their idle draw is
paid either way). Ranking pools by that figure, after the predicted-SLO
filter has dropped those that cannot take the request now, fills the
cheapest pool first and spills to the next only when the forecast says the
first would miss:

    packed J/token = step_j(b*) / b*,  b* = the largest batch bucket within
    the replica's slots whose TPOT cell is ≤ (1 − margin) × the TPOT target
    (the largest within the slots when there is no target; the first bucket
    when none meets it)

and the packed cost is the replica's price over the throughput at ``b*``.
The myopic alternative (``routing.marginal``: what this one request adds
given the batch running now) charges an idle pool its whole batch-1 cost
and a lightly loaded one almost nothing, so whichever pool got traffic first
keeps it at small, expensive batches; on the evaluation traces it used
more joules than sending everything to the fastest pool (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from routing.marginal import cost_per_mtok
from routing.profile import Column


def packed_batch(buckets: Sequence[int], tpot_ms: Sequence[float | None], slots: int,
                 limit_ms: float | None) -> int | None:
    """Index of the largest batch bucket within ``slots`` whose TPOT is at most
    ``limit_ms`` (any, with no limit); the first bucket with data when none
    meets it; None when the column has no TPOT at all."""
    best = first = None
    for i, (b, t) in enumerate(zip(buckets, tpot_ms)):
        if t is None:
            continue
        if first is None:
            first = i
        if b > slots and i != first:
            break
        if limit_ms is None or t <= limit_ms:
            best = i
    return first if best is None else best


class PackedPoint(NamedTuple):
    """A pool's figures at its packed batch (per replica)."""

    batch: int
    j_per_token: float | None  # joules above idle per output token
    ms_per_token: float  # busy milliseconds per output token: TPOT / batch


def column_point(buckets: Sequence[int], col: Column, slots: int, limit_ms: float | None) -> PackedPoint | None:
    """The packed batch of one profile column and its figures; None without TPOT data."""
    i = packed_batch(buckets, col.tpot_ms, slots, limit_ms)
    if i is None:
        return None
    b = buckets[i]
    step_j = col.step_j[i]
    return PackedPoint(b, None if step_j is None else step_j / b, col.tpot_ms[i] / b)


def packed_cost_per_mtok(point: PackedPoint, price_per_hour: float) -> float | None:
    """The replica's price over its throughput at the packed batch, per million output tokens."""
    return cost_per_mtok(price_per_hour, point.ms_per_token)
