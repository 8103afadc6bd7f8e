"""Efficiency profiles: what one pool costs per token, per batch × sequence length.

A profile is a grid over batch-size buckets × sequence-length buckets. Each
cell holds throughput, latency, power, joules and cost per output token, the
number of samples behind them and where they came from. Calibration writes
cells (``calibrated``), a hardware model can fill them (``modelled``), and the
gateway refines them from served requests (``online``) with ``observe``.

Online rule: each metric is an exponentially weighted mean whose weight for a
new sample is ``max(1 / (n + 1), ONLINE_ALPHA_MIN)`` where ``n`` is the cell's
sample count before the sample. Up to ``1 / ONLINE_ALPHA_MIN`` samples that is
the plain mean (a modelled cell with ``n = 0`` is replaced by the first
measurement); after that it forgets with a memory of about 20 samples. A cell
is labelled ``online`` once online samples make up more than half of its
samples, so a calibrated cell keeps its label (and mostly its values) until
online samples accumulate. ``confidence = n / (n + CONFIDENCE_HALF)``.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routing.buckets import (
    DEFAULT_BATCH_BUCKETS,
    DEFAULT_SEQ_BUCKETS,
    bucket_index,
    check_buckets,
)
from routing.errors import ProfileError

SCHEMA_VERSION = 1
ONLINE_ALPHA_MIN = 0.05
CONFIDENCE_HALF = 8  # samples at which confidence reaches 0.5

Provenance = Literal["calibrated", "online", "modelled"]
METRICS = ("throughput_tok_s", "ttft_ms", "tpot_ms", "watts", "j_per_token", "cost_per_mtok")


@dataclass(frozen=True, slots=True)
class Cell:
    """One (batch bucket, sequence bucket) of a profile. ``None`` = not measured."""

    batch: int
    seq_len: int
    throughput_tok_s: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    watts: float | None = None
    j_per_token: float | None = None
    cost_per_mtok: float | None = None
    samples: int = 0
    online_samples: int = 0
    provenance: Provenance = "modelled"
    feasible: bool = True

    @property
    def confidence(self) -> float:
        """0 with no samples, 0.5 at ``CONFIDENCE_HALF``, approaching 1."""
        return self.samples / (self.samples + CONFIDENCE_HALF)


class Column(NamedTuple):
    """One sequence bucket's cells across the batch buckets (None: no data there),
    for code that reads several batches of one sequence length per decision."""

    seq_len: int
    tpot_ms: tuple[float | None, ...]
    step_j: tuple[float | None, ...]  # j_per_token × batch: joules above idle per step
    ttft_ms: tuple[float | None, ...]


class EfficiencyProfile:
    """The measured grid of one pool for one model."""

    def __init__(
        self,
        pool: str,
        hardware: str,
        model: str,
        *,
        batch_buckets: Iterable[int] = DEFAULT_BATCH_BUCKETS,
        seq_buckets: Iterable[int] = DEFAULT_SEQ_BUCKETS,
        currency: str = "USD",
        created: datetime | None = None,
        cells: Iterable[Cell] = (),
    ):
        self.pool = pool
        self.hardware = hardware
        self.model = model
        self.currency = currency
        self.created = created
        self.batch_buckets = tuple(batch_buckets)
        self.seq_buckets = tuple(seq_buckets)
        for axis, buckets in (("batch_buckets", self.batch_buckets), ("seq_buckets", self.seq_buckets)):
            if why := check_buckets(buckets):
                raise ProfileError(f"{axis}: {why}")
        self._grid: list[list[Cell | None]] = [[None] * len(self.seq_buckets) for _ in self.batch_buckets]
        self._columns: list[Column | None] = [None] * len(self.seq_buckets)  # built on demand
        self._n_batch, self._n_seq = len(self.batch_buckets), len(self.seq_buckets)  # read per lookup
        for cell in cells:
            self.put(cell)

    def _index(self, batch: int, seq_len: int) -> tuple[int, int]:
        try:
            return self.batch_buckets.index(batch), self.seq_buckets.index(seq_len)
        except ValueError:
            raise ProfileError(
                f"cell batch {batch} × seq {seq_len} is not on the grid "
                f"{self.batch_buckets} × {self.seq_buckets}"
            ) from None

    def put(self, cell: Cell) -> None:
        """Place ``cell`` at its bucket (its ``batch`` and ``seq_len`` must be buckets)."""
        bi, si = self._index(cell.batch, cell.seq_len)
        self._grid[bi][si] = cell
        self._columns[si] = None

    def cells(self) -> Iterator[Cell]:
        """Cells that hold data, batch-major."""
        return (c for row in self._grid for c in row if c is not None)

    def lookup(self, batch: int, seq_len: int) -> Cell | None:
        """The cell for a batch and sequence length, both rounded up to buckets.

        A batch past the last bucket clamps to it; a sequence past the last
        bucket returns an infeasible cell. ``None`` means no data for the shape.
        """
        bb, sb = self.batch_buckets, self.seq_buckets
        si = bisect_left(sb, seq_len)
        bi = bisect_left(bb, batch)
        if bi == self._n_batch:  # past the last batch bucket: clamp
            bi -= 1
        if si == self._n_seq:
            return Cell(bb[bi], seq_len, feasible=False)
        return self._grid[bi][si]

    def column(self, seq_len: int) -> Column | None:
        """The column of ``seq_len``'s bucket; None past the last bucket."""
        si = bisect_left(self.seq_buckets, seq_len)
        if si == self._n_seq:
            return None
        col = self._columns[si]
        if col is None:
            cells = [row[si] for row in self._grid]
            col = self._columns[si] = Column(
                self.seq_buckets[si],
                tuple(c.tpot_ms if c is not None else None for c in cells),
                tuple(c.j_per_token * c.batch if c is not None and c.j_per_token is not None else None
                      for c in cells),
                tuple(c.ttft_ms if c is not None else None for c in cells),
            )
        return col

    def observe(self, batch: int, seq_len: int, **metrics: float) -> Cell | None:
        """Fold one served request's measurements into its cell (see module doc).

        ``metrics`` are any of ``METRICS``; those not given keep their values.
        A sequence past the last bucket is off the grid: nothing is recorded
        and None is returned. Otherwise the updated cell is returned; it is
        feasible, since the shape was just served.
        """
        if unknown := set(metrics) - set(METRICS):
            raise ValueError(f"unknown metrics {sorted(unknown)}; valid: {', '.join(METRICS)}")
        si = bucket_index(self.seq_buckets, seq_len)
        if si == len(self.seq_buckets):
            return None
        bi = min(bucket_index(self.batch_buckets, batch), len(self.batch_buckets) - 1)
        old = self._grid[bi][si] or Cell(self.batch_buckets[bi], self.seq_buckets[si])
        alpha = max(1.0 / (old.samples + 1), ONLINE_ALPHA_MIN)
        updates = {}
        for name, value in metrics.items():
            prev = getattr(old, name)
            updates[name] = value if prev is None else prev + alpha * (value - prev)
        samples, online = old.samples + 1, old.online_samples + 1
        provenance = "online" if 2 * online > samples else old.provenance
        new = replace(old, **updates, samples=samples, online_samples=online,
                      provenance=provenance, feasible=True)
        self._grid[bi][si] = new
        self._columns[si] = None
        return new

    def to_dict(self) -> dict:
        """The versioned JSON form (see docs/routing.md); unmeasured metrics omitted."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pool": self.pool,
            "hardware": self.hardware,
            "model": self.model,
            "currency": self.currency,
            "created": self.created.isoformat() if self.created else None,
            "batch_buckets": list(self.batch_buckets),
            "seq_buckets": list(self.seq_buckets),
            "cells": [{k: v for k, v in asdict(c).items() if v is not None} for c in self.cells()],
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "profile") -> "EfficiencyProfile":
        """Validate and build; a problem raises ``ProfileError`` naming the key path."""
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ProfileError(
                f"{source}: schema_version: unsupported {version!r} (this build reads {SCHEMA_VERSION})"
            )
        try:
            doc = _ProfileDoc.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise ProfileError(f"{source}: {_loc(err['loc'])}: {err['msg']}") from None
        for axis in ("batch_buckets", "seq_buckets"):
            if why := check_buckets(getattr(doc, axis)):
                raise ProfileError(f"{source}: {axis}: {why}")
        seen: set[tuple[int, int]] = set()
        for i, c in enumerate(doc.cells):
            for key, buckets in (("batch", doc.batch_buckets), ("seq_len", doc.seq_buckets)):
                if getattr(c, key) not in buckets:
                    raise ProfileError(
                        f"{source}: cells[{i}].{key}: {getattr(c, key)} is not one of {buckets}"
                    )
            if c.online_samples > c.samples:
                raise ProfileError(f"{source}: cells[{i}].online_samples: exceeds samples ({c.samples})")
            if (c.batch, c.seq_len) in seen:
                raise ProfileError(f"{source}: cells[{i}]: duplicate cell batch {c.batch} × seq {c.seq_len}")
            seen.add((c.batch, c.seq_len))
        return cls(
            doc.pool, doc.hardware, doc.model,
            batch_buckets=doc.batch_buckets, seq_buckets=doc.seq_buckets,
            currency=doc.currency, created=doc.created,
            cells=(Cell(**c.model_dump()) for c in doc.cells),
        )

    @classmethod
    def load(cls, path: str | Path) -> "EfficiencyProfile":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ProfileError(f"{path}: not valid JSON: {e}") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


class ProfileBook(Mapping[str, EfficiencyProfile]):
    """Profiles by pool name; a directory on disk holds one ``<pool>.json`` each."""

    def __init__(self, profiles: Iterable[EfficiencyProfile] = ()):
        self._by_pool: dict[str, EfficiencyProfile] = {}
        for p in profiles:
            self.add(p)

    def add(self, profile: EfficiencyProfile) -> None:
        if profile.pool in self._by_pool:
            raise ProfileError(f"two profiles for pool '{profile.pool}'")
        self._by_pool[profile.pool] = profile

    def __getitem__(self, pool: str) -> EfficiencyProfile:
        return self._by_pool[pool]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_pool)

    def __len__(self) -> int:
        return len(self._by_pool)

    @classmethod
    def load_dir(cls, directory: str | Path) -> "ProfileBook":
        book = cls()
        for path in sorted(Path(directory).glob("*.json")):
            profile = EfficiencyProfile.load(path)
            if profile.pool in book:
                raise ProfileError(f"{path}: a second profile for pool '{profile.pool}'")
            book.add(profile)
        return book

    def save_dir(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for pool, profile in self._by_pool.items():
            profile.save(directory / f"{pool}.json")


def _loc(loc: tuple) -> str:
    """pydantic's error location as a key path: ``cells[3].tpot_ms``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


_STRICT = ConfigDict(extra="forbid")
_Metric = float | None


class _CellDoc(BaseModel):
    model_config = _STRICT
    batch: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    throughput_tok_s: _Metric = Field(None, ge=0)
    ttft_ms: _Metric = Field(None, ge=0)
    tpot_ms: _Metric = Field(None, ge=0)
    watts: _Metric = Field(None, ge=0)
    j_per_token: _Metric = Field(None, ge=0)
    cost_per_mtok: _Metric = Field(None, ge=0)
    samples: int = Field(0, ge=0)
    online_samples: int = Field(0, ge=0)
    provenance: Provenance = "modelled"
    feasible: bool = True


class _ProfileDoc(BaseModel):
    model_config = _STRICT
    schema_version: int
    pool: str = Field(min_length=1)
    hardware: str = Field(min_length=1)
    model: str = Field(min_length=1)
    currency: str = "USD"
    created: datetime | None = None
    batch_buckets: tuple[int, ...] = DEFAULT_BATCH_BUCKETS
    seq_buckets: tuple[int, ...] = DEFAULT_SEQ_BUCKETS
    cells: list[_CellDoc] = []
