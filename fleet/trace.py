"""The request trace: one JSON object per line, one line per request.

The same file drives the load generator (replay) and the offline simulator,
so the format is kept small and strict: unknown keys are errors (a typo such
as ``slo_ttft`` must not silently drop a target), arrivals never go back in
time, and every error names the line and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Served(BaseModel):
    """How a recorded request was served (traces recorded by the gateway); replay ignores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    ttft_ms: float = Field(ge=0)
    e2e_ms: float = Field(ge=0)
    energy_j: float | None = Field(default=None, ge=0)


class TraceRecord(BaseModel):
    """One request: when it arrives, what it asks for, what it must meet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: float = Field(ge=0, description="arrival, seconds from the start of the trace")
    model: str = Field(min_length=1)
    prompt_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    slo_ttft_ms: float | None = Field(default=None, gt=0)
    slo_tpot_ms: float | None = Field(default=None, gt=0)
    served: Served | None = None


class TraceError(ValueError):
    """A trace line that is not a valid record; the message names line and key."""


def read_trace(path: str | Path) -> list[TraceRecord]:
    """Read and validate a JSONL trace. Blank lines are skipped."""
    records: list[TraceRecord] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = _parse_line(path, lineno, line)
            if records and record.t < records[-1].t:
                raise TraceError(
                    f"{path}:{lineno}: t: {record.t} is before the previous arrival {records[-1].t}"
                )
            records.append(record)
    return records


def write_trace(path: str | Path, records: Iterable[TraceRecord]) -> None:
    """Write records as JSONL, leaving out optional fields that are unset."""
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record.model_dump_json(exclude_none=True))
            f.write("\n")


def _parse_line(path: str | Path, lineno: int, line: str) -> TraceRecord:
    where = f"{path}:{lineno}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise TraceError(f"{where}: not JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        return TraceRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(record)"
        raise TraceError(f"{where}: {key}: {first['msg']}") from None
