"""A trace as compact arrays: what the simulator replays.

Built from ``fleet.trace`` records (the JSONL format the load generator
replays too) or straight from ``loadtests.workloads``' seeded generators,
which skips per-request objects so a million requests stay small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleet.trace import TraceRecord, read_trace
from loadtests.workloads import arrival_times, sample_lengths, unit_gaps


@dataclass(frozen=True)
class Workload:
    """Requests in arrival order; a NaN SLO means the request sets none."""

    t: np.ndarray  # arrival, s
    model: np.ndarray  # index into ``models``
    models: tuple[str, ...]
    prompt: np.ndarray
    output: np.ndarray
    slo_ttft_ms: np.ndarray
    slo_tpot_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def from_records(cls, records: Iterable[TraceRecord]) -> "Workload":
        records = list(records)
        models = tuple(dict.fromkeys(r.model for r in records))
        index = {m: i for i, m in enumerate(models)}
        nan = float("nan")
        return cls(
            t=np.array([r.t for r in records], dtype=float),
            model=np.array([index[r.model] for r in records], dtype=np.int32),
            models=models,
            prompt=np.array([r.prompt_tokens for r in records], dtype=np.int64),
            output=np.array([r.output_tokens for r in records], dtype=np.int64),
            slo_ttft_ms=np.array([nan if r.slo_ttft_ms is None else r.slo_ttft_ms for r in records]),
            slo_tpot_ms=np.array([nan if r.slo_tpot_ms is None else r.slo_tpot_ms for r in records]),
        )

    @classmethod
    def read(cls, path: str | Path) -> "Workload":
        """A validated JSONL trace (``fleet.trace.read_trace``)."""
        return cls.from_records(read_trace(path))

    @classmethod
    def synthetic(cls, model: str, n: int, rate: float, *, lengths: str = "chat",
                  arrival: str = "poisson", seed: int = 0) -> "Workload":
        """``n`` requests at ``rate``/s from ``loadtests.workloads``' samplers, no SLOs."""
        rng = np.random.default_rng(seed)
        u = np.concatenate(([0.0], np.cumsum(unit_gaps(n - 1, arrival, rng))))
        prompts, outputs = sample_lengths(lengths, n, rng)
        nan = np.full(n, np.nan)
        return cls(arrival_times(u, rate), np.zeros(n, dtype=np.int32), (model,),
                   prompts.astype(np.int64), outputs.astype(np.int64), nan, nan.copy())

    def with_default_slo(self, ttft_ms: float | None, tpot_ms: float | None) -> "Workload":
        """Fill requests that set no target with these defaults."""
        return Workload(self.t, self.model, self.models, self.prompt, self.output,
                        _fill(self.slo_ttft_ms, ttft_ms), _fill(self.slo_tpot_ms, tpot_ms))

    @property
    def span_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) else 0.0


def _fill(values: np.ndarray, default: float | None) -> np.ndarray:
    return values if default is None else np.where(np.isnan(values), default, values)
