"""SLO-feasible throughput of one replica of a hardware type for one request class."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.profiles import EngineFigures, batch_ladder, operating_point
from plan.demand import RequestClass


@dataclass(frozen=True, slots=True)
class Capacity:
    """The largest batch meeting the class SLO and what one replica does there."""

    batch: int
    requests_per_s: float
    attributed_j_per_request: float


def capacity(f: EngineFigures, c: RequestClass) -> Capacity | None:
    """None when the class cannot run there: too long for the compiled/KV/model
    limit, or no batch meets its TTFT and TPOT targets."""
    if c.max_total > f.max_model_len:
        return None
    best = None
    for b in batch_ladder(f.max_batch):
        op = operating_point(f.hardware, f.model, b, c.prompt, c.output, f.max_batch)
        if op is None or op.batch < 1:
            break
        if op.ttft_s * 1e3 <= c.slo_ttft_ms and op.tpot_s * 1e3 <= c.slo_tpot_ms:
            best = op
    if best is None:
        return None
    return Capacity(best.batch, best.throughput_tok_s / c.output, best.attributed_j_per_token * c.output)
