"""A sweep's cells folded into a calibrated ``EfficiencyProfile``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from calibration.sweep import INFEASIBLE, OK, CellResult, PoolSweep
from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS, bucket_index
from routing.profile import Cell, EfficiencyProfile


def build_profile(
    sweep: PoolSweep,
    batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
    seq_buckets: Sequence[int] = DEFAULT_SEQ_BUCKETS,
    created: datetime | None = None,
) -> EfficiencyProfile:
    """The calibrated profile of a sweep.

    A measurement lands in the cell of its batch and ``prompt + output``
    rounded up to buckets. When several land in one cell, the largest
    feasible one stands for it (routing rounds shapes up, so a cell should
    hold the dearest shape it covers); a cell with only refusals is
    ``feasible: false``. Skipped and failed points leave no cell.
    """
    groups: dict[tuple[int, int], list[CellResult]] = {}
    for c in sweep.cells:
        if c.status not in (OK, INFEASIBLE):
            continue
        bi, si = bucket_index(batch_buckets, c.batch), bucket_index(seq_buckets, c.seq_len)
        if bi == len(batch_buckets) or si == len(seq_buckets):
            continue  # off the grid
        groups.setdefault((batch_buckets[bi], seq_buckets[si]), []).append(c)
    cells = []
    for (b, s), group in sorted(groups.items()):
        feasible = [c for c in group if c.status == OK]
        if not feasible:
            cells.append(Cell(b, s, provenance="calibrated", feasible=False))
            continue
        c = max(feasible, key=lambda c: (c.batch, c.seq_len))
        cells.append(Cell(
            b, s, throughput_tok_s=c.throughput_tok_s, ttft_ms=c.ttft_ms, tpot_ms=c.tpot_ms,
            watts=c.watts, j_per_token=c.j_per_token, cost_per_mtok=c.cost_per_mtok,
            samples=c.requests, online_samples=0, provenance="calibrated", feasible=True,
        ))
    return EfficiencyProfile(
        sweep.pool.name, sweep.pool.hardware, sweep.model,
        batch_buckets=batch_buckets, seq_buckets=seq_buckets,
        created=created or datetime.now(timezone.utc).replace(microsecond=0), cells=cells,
    )
