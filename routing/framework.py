"""Scheduling framework: plugin contracts and the Router that runs them.

Modelled on gateway-api-inference-extension's scheduler. A request passes
four guards (serves the model, healthy, feasible, has capacity), each of which
raises its typed error when it leaves no pool. Then the router tries its
``SchedulingProfile``s in order: the first whose filters keep at least one
pool ranks them with its weighted scorers (each score in [0, 1]) and its
picker. A later profile is a fallback, and the reason says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import mul
from typing import Protocol

from routing.buckets import round_up
from routing.errors import (
    AllPoolsSaturated,
    ModelNotServed,
    NoFeasiblePool,
    NoHealthyPool,
    RoutingError,
    UnsupportedFeature,
)
from routing.predictor import LatencyPredictor, Prediction
from routing.profile import Cell
from routing.shape import RequestShape
from routing.state import PoolState, replica_label


@dataclass(slots=True, eq=False)  # compared by identity
class Candidate:
    """A pool as one request would meet it: the batch it would join, that cell,
    and (when the router has a predictor) the pool's forecast for the request."""

    pool: PoolState
    batch: int
    cell: Cell | None
    prediction: Prediction | None = None


@dataclass(slots=True)  # not frozen: one per pool per decision, and a frozen __init__ costs 4x
class RankedPool:
    """One pool in a decision: total score, per-scorer scores, the cell used."""

    name: str
    score: float
    scores: dict[str, float]
    cell: Cell | None
    batch: int
    pool: PoolState = field(repr=False, compare=False)
    prediction: Prediction | None = None

    @property
    def replica(self) -> str:
        """The replica of pool ``name`` ranked ("": the pool as a whole)."""
        return self.pool.replica

    @property
    def label(self) -> str:
        return self.pool.label


@dataclass(slots=True)  # not frozen, as RankedPool
class Dropped:
    """A pool that serves the model but was not ranked, and why."""

    name: str
    why: str
    prediction: Prediction | None = None
    replica: str = ""  # as ``PoolState.replica``

    @property
    def label(self) -> str:
        return replica_label(self.name, self.replica)


@dataclass(slots=True)  # not frozen, as RankedPool
class Decision:
    """Ranked pools, best first, a one-line human-readable reason, and the
    pools dropped on the way (with their forecasts, for ``explain``).

    The reason is written when first read: the simulator never reads it."""

    ranked: list[RankedPool]
    policy: str  # the scheduling profile that ranked them
    at: float  # the injected clock's reading
    dropped: tuple[Dropped, ...] = ()
    _write: Callable[[], str] = field(default=lambda: "", repr=False, compare=False)
    _memo: list = field(default_factory=list, repr=False, compare=False)
    # The TPOT target the profile's filters checked every ranked pool's forecast against (the
    # request's or the configured one); None when none did (e.g. the best-outcome fallback). The
    # gateway and the simulator keep it per pool while the request runs (PoolState.tightest_tpot_ms).
    promised_tpot_ms: float | None = None

    @property
    def reason(self) -> str:
        if not self._memo:
            self._memo.append(self._write())
        return self._memo[0]

    @property
    def best(self) -> RankedPool:
        return self.ranked[0]


class Filter(Protocol):
    """Keeps or drops one candidate."""

    name: str

    def keep(self, shape: RequestShape, cand: Candidate) -> bool: ...

    def describe(self, shape: RequestShape) -> str:
        """What the filter requires, for a reason line."""
        ...

    def why(self, shape: RequestShape, cand: Candidate) -> str:
        """Why it dropped ``cand``, e.g. ``slo: ttft 850 > 450 ms``."""
        ...

    def promised_tpot_ms(self, shape: RequestShape) -> float | None:
        """The TPOT target every pool this filter keeps is forecast to meet (None: it promises none)."""
        ...


class Scorer(Protocol):
    """Scores every candidate in [0, 1], higher is better; weights live outside."""

    name: str

    def score(self, shape: RequestShape, cands: Sequence[Candidate]) -> list[float]: ...

    def explain(self, shape: RequestShape, ranked: RankedPool) -> str:
        """The scorer's metric for one pool, e.g. ``0.41 J/tok``."""
        ...


class Picker(Protocol):
    """Orders scored pools, best first."""

    name: str

    def pick(self, ranked: list[RankedPool]) -> list[RankedPool]: ...


@dataclass(frozen=True)
class SchedulingProfile:
    """Filters, weighted scorers and a picker: one way to rank pools."""

    name: str
    filters: tuple[Filter, ...]
    scorers: tuple[tuple[Scorer, float], ...]
    picker: Picker

    def rank(self, shape: RequestShape, cands: Sequence[Candidate]) -> list[RankedPool]:
        if len(self.scorers) == 1:  # the common case, without the weighted sum
            scorer = self.scorers[0][0]
            name = scorer.name
            ranked = [RankedPool(c.pool.name, v, {name: v}, c.cell, c.batch, c.pool, c.prediction)
                      for c, v in zip(cands, scorer.score(shape, cands))]
            return self.picker.pick(ranked)
        names = [s.name for s, _ in self.scorers]
        total_weight = sum(w for _, w in self.scorers) or 1.0
        weights = [w for _, w in self.scorers]
        columns = [s.score(shape, cands) for s, _ in self.scorers]
        ranked = [RankedPool(c.pool.name, sum(map(mul, weights, values)) / total_weight, dict(zip(names, values)),
                             c.cell, c.batch, c.pool, c.prediction)
                  for c, values in zip(cands, zip(*columns) if columns else [()] * len(cands))]
        return self.picker.pick(ranked)

    @property
    def lead(self) -> Scorer | None:
        """The heaviest scorer: the one a reason quotes."""
        return max(self.scorers, key=lambda sw: sw[1])[0] if self.scorers else None


def join_batch(pool: PoolState, sequences: int) -> int:
    """Batch a request would run in: one replica's share of the load plus its
    sequences, rounded up to the pool's static bucket on NPUs."""
    reps = pool.replicas
    batch = (-(-pool.load // reps) if reps > 1 else pool.load) + sequences
    return round_up(pool.batch_buckets, batch) if pool.batch_buckets else batch


def candidate(pool: PoolState, shape: RequestShape) -> Candidate:
    """The pool as ``shape`` meets it; no cell when its profile is for another model."""
    batch = join_batch(pool, shape.sequences)
    prof = pool.profile
    cell = prof.lookup(batch, shape.total_tokens) if prof is not None and prof.model == shape.model else None
    return Candidate(pool, batch, cell)


class _Guard:
    """A built-in filter that raises its error when it leaves no pool."""

    name = ""
    shown = True  # whether pools it drops are named in the reason

    def keep(self, shape: RequestShape, cand: Candidate) -> bool:
        raise NotImplementedError

    def exhausted(self, shape: RequestShape, cands: Sequence[Candidate]) -> RoutingError:
        raise NotImplementedError

    def why(self, shape: RequestShape, cand: Candidate) -> str:
        """Why ``cand`` was dropped, for the reason line."""
        return self.name


class ServesModel(_Guard):
    name, shown = "other model", False

    def keep(self, shape, cand):
        return shape.model in cand.pool.models

    def exhausted(self, shape, cands):
        return ModelNotServed(shape.model, tuple(sorted({m for c in cands for m in c.pool.models})))


class Capable(_Guard):
    """The pool's engine honours every feature the request uses (logprobs, penalties, ...)."""

    name = "cannot honour"

    def keep(self, shape, cand):
        return shape.features <= cand.pool.capabilities

    def why(self, shape, cand) -> str:
        return f"lacks {', '.join(sorted(shape.features - cand.pool.capabilities))}"

    def exhausted(self, shape, cands):
        # The features the request's pools lack: those no pool has are named first.
        lacking = {f for c in cands for f in shape.features - c.pool.capabilities}
        return UnsupportedFeature(shape.model, tuple(sorted(lacking)))


class Healthy(_Guard):
    name = "unhealthy"

    def keep(self, shape, cand):
        return cand.pool.healthy

    def exhausted(self, shape, cands):
        return NoHealthyPool(shape.model)


class Feasible(_Guard):
    """Sequence fits the pool's max length and the profile cell is feasible."""

    name = "too long"

    def keep(self, shape, cand):
        cell = cand.cell
        return shape.total_tokens <= cand.pool.max_seq_len and (cell is None or cell.feasible)

    def exhausted(self, shape, cands):
        return NoFeasiblePool(shape.model, shape.total_tokens)


class HasCapacity(_Guard):
    """Load below ``saturation`` × capacity; dropping the rest is the spill-over."""

    name = "saturated"

    def __init__(self, saturation: float, retry_after_s: float):
        self.saturation = saturation
        self.retry_after_s = retry_after_s

    def keep(self, shape, cand):
        return cand.pool.load < self.saturation * cand.pool.capacity

    def exhausted(self, shape, cands):
        """Retry after the shortest predicted wait among the pools, ``retry_after_s`` where none can be predicted."""
        waits = [w for c in cands if (w := self.predicted_wait_s(shape, c)) is not None]
        return AllPoolsSaturated(min(waits) if waits else self.retry_after_s, shape.model)

    def predicted_wait_s(self, shape: RequestShape, cand: Candidate) -> float | None:
        """Until enough of the pool's requests finish to admit ``shape``: its capacity's slots each free
        up once per request time (the profile cell's TTFT plus TPOT × output tokens); None without a cell."""
        cell = cand.cell
        if cell is None or cell.ttft_ms is None or cell.tpot_ms is None:
            return None
        request_s = (cell.ttft_ms + cell.tpot_ms * max(shape.max_new_tokens, 1)) / 1e3
        excess = cand.pool.load + shape.sequences - self.saturation * cand.pool.capacity
        return max(excess, 1) * request_s / max(cand.pool.capacity, 1)


class Router:
    """Runs guards then scheduling profiles; pure apart from the injected clock
    (and whatever state a picker was given, e.g. an RNG). With a ``predictor``
    every candidate that passed the guards gets its forecast before ranking."""

    def __init__(
        self,
        profiles: Sequence[SchedulingProfile],
        *,
        saturation: float = 1.0,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        shown: int = 4,
        predictor: LatencyPredictor | None = None,
    ):
        if not profiles or profiles[-1].filters:
            raise ValueError("the last scheduling profile must have no filters (it is the fallback)")
        self.profiles = tuple(profiles)
        self.guards: tuple[_Guard, ...] = (
            ServesModel(), Capable(), Healthy(), Feasible(), HasCapacity(saturation, retry_after_s),
        )
        self.clock = clock
        self.shown = shown
        self.predictor = predictor

    def choose(self, shape: RequestShape, pools: Sequence[PoolState]) -> Decision:
        """Rank the pools for ``shape``; raise a ``RoutingError`` when none can take it."""
        cands = [candidate(p, shape) for p in pools]
        dropped: list[Dropped] = []
        cands = self._screen(shape, cands, dropped)
        if self.predictor is not None:
            predict = self.predictor.predict
            for c in cands:
                c.prediction = predict(c.pool, shape, c.batch, c.cell)
        missed = None
        for profile in self.profiles:
            kept = cands
            for f in profile.filters:
                keep = f.keep
                kept = [c for c in kept if keep(shape, c)]
            if kept:
                break
            missed = missed or profile
        if len(kept) < len(cands):  # dropped by the profile's own filters
            for c in cands:
                if c not in kept:
                    f = next(f for f in profile.filters if not f.keep(shape, c))
                    dropped.append(Dropped(c.pool.name, f.why(shape, c), c.prediction, c.pool.replica))
        ranked = profile.rank(shape, kept)
        promised = None
        for f in profile.filters:
            p = f.promised_tpot_ms(shape)
            if p is not None and (promised is None or p < promised):
                promised = p
        return Decision(ranked, profile.name, self.clock(), tuple(dropped),
                        lambda: self._reason(shape, profile, ranked, missed, dropped), promised_tpot_ms=promised)

    def _screen(self, shape: RequestShape, cands: list[Candidate], dropped: list[Dropped]) -> list[Candidate]:
        """The guards in one pass over the pools (the hot path): the pools that pass them all;
        ``dropped`` gets those a shown guard dropped, grouped by guard as ``_guard`` lists them.
        When no pool passes, ``_guard`` runs them one after another to raise the right error.
        ``tests/unit/test_router.py`` checks both agree."""
        model, features, tokens = shape.model, shape.features, shape.total_tokens
        saturation = self.guards[-1].saturation
        kept, failed = [], []
        for c in cands:
            p, cell = c.pool, c.cell
            if model not in p.models:
                continue  # ServesModel: never shown
            if not features <= p.capabilities:
                failed.append((1, c))
            elif not p.healthy:
                failed.append((2, c))
            elif tokens > p.max_seq_len or (cell is not None and not cell.feasible):
                failed.append((3, c))
            elif p.load >= saturation * p.capacity:
                failed.append((4, c))
            else:
                kept.append(c)
        if not kept:
            return self._guard(shape, cands, dropped)
        if failed:
            failed.sort(key=lambda fc: fc[0])  # stable: pools keep their order within a guard
            guards = self.guards
            dropped += [Dropped(c.pool.name, guards[g].why(shape, c), None, c.pool.replica) for g, c in failed]
        return kept

    def _guard(self, shape: RequestShape, cands: list[Candidate], dropped: list[Dropped]) -> list[Candidate]:
        """The guards one after another: the pools they keep; ``dropped`` gets the shown ones they drop."""
        for guard in self.guards:
            kept = [c for c in cands if guard.keep(shape, c)]
            if not kept:
                raise guard.exhausted(shape, cands)
            if guard.shown and len(kept) < len(cands):
                ids = {id(c) for c in kept}
                dropped += [Dropped(c.pool.name, guard.why(shape, c), None, c.pool.replica)
                            for c in cands if id(c) not in ids]
            cands = kept
        return cands

    def _reason(self, shape, profile, ranked, missed, dropped) -> str:
        lead = profile.lead
        if lead is None:
            line = f"{profile.picker.name}: " + " > ".join(r.label for r in ranked[: self.shown])
        else:
            parts = []
            for r in ranked[: self.shown]:
                text = f"{r.label}: {lead.explain(shape, r)}"
                if not parts and r.cell is not None:
                    text += (f" at batch {r.cell.batch}×seq {r.cell.seq_len}"
                             f" ({r.cell.provenance}, n={r.cell.samples})")
                parts.append(text)
            line = "; ".join(parts)
        if len(ranked) > self.shown:
            line += f"; +{len(ranked) - self.shown} more"
        if missed is not None:
            needs = ", ".join(f.describe(shape) for f in missed.filters)
            line = f"no pool meets {needs} for {missed.name}, fell back to {profile.name}: {line}"
        if dropped:
            line += "; skipped " + ", ".join(f"{d.label} ({d.why})" for d in dropped)
        return line
