"""The scorers, filters and pickers policies are built from (``routing.plugins``
registers them by name, ``routing.presets`` composes the named policies).

Metric scorers (``efficiency``, ``cost``, ``latency``, ``marginal-*``,
``slo-violation``) give the pool with the lowest metric 1 and every other
pool ``best / value``; a pool with no profile cell for the shape (or no value
for the metric) gets ``NEUTRAL``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import count
from operator import attrgetter

from routing.framework import Candidate, RankedPool
from routing.packing import PackedPoint, column_point, packed_cost_per_mtok
from routing.shape import RequestShape

NEUTRAL = 0.5
_score = attrgetter("score")


def _relative(values: list[float | None]) -> list[float]:
    """``best / value`` per pool, lowest value best; ``NEUTRAL`` where a pool has no value."""
    known = [v for v in values if v is not None]
    if not known:
        return [NEUTRAL] * len(values)
    best = min(known)
    return [NEUTRAL if v is None else 1.0 if v <= best else best / v for v in values]


class _LowerIsBetter:
    """Scores ``best / value`` of a per-pool metric where lower is better."""

    name = ""

    def metric(self, shape: RequestShape, cand: Candidate | RankedPool) -> float | None:
        raise NotImplementedError

    def score(self, shape: RequestShape, cands: Sequence[Candidate]) -> list[float]:
        return _relative([self.metric(shape, c) for c in cands])

    def explain(self, shape: RequestShape, ranked: RankedPool) -> str:
        value = self.metric(shape, ranked)
        return "no profile" if value is None else self.format(value, ranked)

    def format(self, value: float, ranked: RankedPool) -> str:
        raise NotImplementedError


class EfficiencyScorer(_LowerIsBetter):
    """Joules per output token from the profile cell."""

    name = "efficiency"

    def metric(self, shape, cand):
        return cand.cell.j_per_token if cand.cell is not None else None

    def format(self, value, ranked):
        return f"{value:.2f} J/tok"


class CostScorer(_LowerIsBetter):
    """Cost per million output tokens: the cell's, else the pool's hourly
    price over the cell's throughput."""

    name = "cost"

    def metric(self, shape, cand):
        cell = cand.cell
        if cell is None:
            return None
        if cell.cost_per_mtok is not None:
            return cell.cost_per_mtok
        if cell.throughput_tok_s and cand.pool.price_per_hour > 0:
            return cand.pool.price_per_hour / 3600 / cell.throughput_tok_s * 1e6
        return None

    def format(self, value, ranked):
        currency = ranked.pool.profile.currency if ranked.pool.profile else ""
        return f"{value:.3g} {currency}/Mtok"


class LatencyScorer(_LowerIsBetter):
    """Predicted end-to-end latency: TTFT + TPOT × max new tokens."""

    name = "latency"

    def metric(self, shape, cand):
        cell = cand.cell
        if cell is None or cell.ttft_ms is None or cell.tpot_ms is None:
            return None
        return cell.ttft_ms + cell.tpot_ms * shape.max_new_tokens

    def format(self, value, ranked):
        return f"{value / 1000:.2f} s predicted (ttft {ranked.cell.ttft_ms:.0f} ms, tpot {ranked.cell.tpot_ms:.0f} ms)"


class LoadScorer:
    """Free share of capacity: ``1 - load / capacity``, clipped to [0, 1]."""

    name = "load"

    def score(self, shape, cands):
        return [max(0.0, 1.0 - c.pool.load / c.pool.capacity) if c.pool.capacity > 0 else 0.0 for c in cands]

    def explain(self, shape, ranked):
        return f"load {ranked.pool.load}/{ranked.pool.capacity}"


class PrefillQueueScorer:
    """Fewer prompt tokens sent and not yet prefilled is better: ``1 / (1 + tokens / 1000)``.

    With a small weight beside a packed figure, which is equal for the replicas
    of one pool, it breaks their tie: a prompt goes where no other waits for its
    prefill (prefills spread, so none waits behind another's in one engine
    step), and where none waits, to the first, so decoding packs."""

    name = "prefill-queue"

    def score(self, shape, cands):
        return [1.0 / (1.0 + c.pool.prefill_tokens / 1000.0) for c in cands]

    def explain(self, shape, ranked):
        return f"{ranked.pool.prefill_tokens} prompt tokens waiting"


class SloFilter:
    """Keeps pools whose predicted TTFT and TPOT meet the targets. The request's
    own targets win over the configured ones; a pool with no prediction for a
    set target is dropped; with no targets at all every pool is kept."""

    name = "slo"

    def __init__(self, ttft_ms: float | None = None, tpot_ms: float | None = None):
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms

    def keep(self, shape, cand):
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        cell = cand.cell
        if ttft is not None and (cell is None or cell.ttft_ms is None or cell.ttft_ms > ttft):
            return False
        if tpot is not None and (cell is None or cell.tpot_ms is None or cell.tpot_ms > tpot):
            return False
        return True

    def describe(self, shape):
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        parts = [f"ttft ≤ {ttft:g} ms" if ttft is not None else "", f"tpot ≤ {tpot:g} ms" if tpot is not None else ""]
        return "SLO " + ", ".join(p for p in parts if p)

    def why(self, shape, cand):
        return self.name

    def promised_tpot_ms(self, shape):
        return None


def _tighter(tpot_ms: float | None, held_ms: float | None) -> float | None:
    """The tighter of a TPOT target and the tightest one promised to a sequence a pool runs (either may be None)."""
    return held_ms if held_ms is not None and (tpot_ms is None or held_ms < tpot_ms) else tpot_ms


def _targets(shape: RequestShape, ttft_ms: float | None, tpot_ms: float | None) -> tuple[float | None, float | None]:
    """The request's own targets, else the configured defaults."""
    return (shape.slo_ttft_ms if shape.slo_ttft_ms is not None else ttft_ms,
            shape.slo_tpot_ms if shape.slo_tpot_ms is not None else tpot_ms)


class MarginalEnergyScorer(_LowerIsBetter):
    """Joules above idle the pool spends because of the request, per output
    token (``routing.marginal``): a busy pool's extra step cost, an idle pool's whole cost."""

    name = "marginal-energy"

    def metric(self, shape, cand):
        pred = cand.prediction
        return None if pred is None else pred.marginal_j_per_token

    def format(self, value, ranked):
        p = ranked.prediction
        return f"{value:.3f} J/tok marginal (ttft {p.ttft_ms:.0f} ms, tpot {p.tpot_ms:.1f} ms predicted)"


class MarginalCostScorer(_LowerIsBetter):
    """The pool's price × the extra busy time the request causes, per million output tokens."""

    name = "marginal-cost"

    def metric(self, shape, cand):
        pred = cand.prediction
        return None if pred is None else pred.marginal_cost_per_mtok

    def format(self, value, ranked):
        currency = ranked.pool.profile.currency if ranked.pool.profile else ""
        p = ranked.prediction
        return f"{value:.3g} {currency}/Mtok marginal (ttft {p.ttft_ms:.0f} ms, tpot {p.tpot_ms:.1f} ms predicted)"


class _Packed(_LowerIsBetter):
    """A pool's cost per token when filled to the batch the request's TPOT
    target allows (``routing.packing``); the target is the request's, else
    ``tpot_ms``, tightened by ``margin``."""

    #: Entries the memo keeps before it starts over (targets come from headers: unbounded).
    MEMO_SIZE = 4096

    def __init__(self, margin: float = 0.1, tpot_ms: float | None = None):
        self.scale = 1.0 - margin
        self.tpot_ms = tpot_ms
        # (id of the profile column, slots, limit) -> (that column, its point). Keyed by the column
        # itself, not the pool's name: a pool serving two models has a profile per model. A profile
        # replaces a column when it learns, so an entry is reused only while its column is live.
        self._memo: dict[tuple, tuple] = {}

    def point(self, shape: RequestShape, pool) -> PackedPoint | None:
        return self._point(pool, shape.total_tokens, self._limit(shape))

    def _limit(self, shape: RequestShape) -> float | None:
        tpot = _targets(shape, None, self.tpot_ms)[1]
        return None if tpot is None else self.scale * tpot

    def _point(self, pool, seq: int, limit: float | None) -> PackedPoint | None:
        prof = pool.profile
        col = None if prof is None else prof.column(seq)
        if col is None:
            return None
        key = (id(col), pool.slots, limit)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is col:
            return hit[1]
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        point = column_point(prof.batch_buckets, col, pool.slots, limit)
        self._memo[key] = (col, point)
        return point

    def value(self, point: PackedPoint, pool) -> float | None:
        raise NotImplementedError

    def metric(self, shape, cand):
        point = self.point(shape, cand.pool)
        return None if point is None else self.value(point, cand.pool)

    def score(self, shape, cands):
        """``_LowerIsBetter.score`` with the TPOT limit worked out once per decision (the hot path)."""
        seq, limit, point, value = shape.total_tokens, self._limit(shape), self._point, self.value
        return _relative([None if (pt := point(c.pool, seq, limit)) is None else value(pt, c.pool) for c in cands])

    def explain(self, shape, ranked):
        point = self.point(shape, ranked.pool)
        value = None if point is None else self.value(point, ranked.pool)
        if value is None:
            return "no profile"
        pred = ranked.prediction
        now = "" if pred is None else f"; ttft {pred.ttft_ms:.0f} ms, tpot {pred.tpot_ms:.1f} ms predicted"
        return f"{value:.3g} {self.unit(ranked)} when packed to batch {point.batch}{now}"


class PackedEnergyScorer(_Packed):
    """Joules above idle per output token at the packed batch: fills the pool
    that is cheapest when full first (``routing.packing``)."""

    name = "packed-energy"

    def value(self, point, pool):
        return point.j_per_token

    def unit(self, ranked):
        return "J/tok"


class PackedCostScorer(_Packed):
    """The replica's price over its throughput at the packed batch, per million output tokens."""

    name = "packed-cost"

    def value(self, point, pool):
        return packed_cost_per_mtok(point, pool.price_per_hour)

    def unit(self, ranked):
        return f"{ranked.pool.profile.currency}/Mtok"


class ViolationScorer(_LowerIsBetter):
    """The best predicted outcome: the largest ratio of predicted to target
    TTFT/TPOT (1 = exactly on target), the TPOT target being the tighter of
    the request's and the tightest promised to a sequence the pool runs (a
    request that must miss should not make others miss too); with no
    targets, predicted end-to-end latency."""

    name = "slo-violation"

    def __init__(self, ttft_ms: float | None = None, tpot_ms: float | None = None):
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms

    def metric(self, shape, cand):
        pred = cand.prediction
        if pred is None:
            return None
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        tpot = _tighter(tpot, cand.pool.tightest_tpot_ms)
        if ttft is None and tpot is None:
            return pred.e2e_ms(shape.max_new_tokens)
        return max(pred.ttft_ms / ttft if ttft else 0.0, pred.tpot_ms / tpot if tpot else 0.0)

    def format(self, value, ranked):
        p = ranked.prediction
        return f"{value:.2f}× target (ttft {p.ttft_ms:.0f} ms, tpot {p.tpot_ms:.1f} ms predicted)"


class PredictedSloFilter:
    """Keeps pools whose *predicted* TTFT and TPOT (``routing.predictor``: queue
    and online correction included) meet the targets with ``margin`` to spare:
    ``predicted <= (1 - margin) × target``. Targets: the request's, else the
    configured ones; a pool with no forecast is dropped when a target is set.

    With ``protect_in_flight`` a pool is also dropped when the request would
    slow its batch past the tightest TPOT target promised to a sequence it
    is already running (``PoolState.tightest_tpot_ms``, same margin; the
    promise is the TPOT target this filter checked when that sequence was
    routed, ``Decision.promised_tpot_ms``: one routed by the best-outcome
    fallback, its target out of reach, was promised nothing): a batch
    steps at one pace, so a relaxed request that packs a pool beyond what a
    running tight one needs breaks a promise already made. Without it, on
    the evaluation traces (``bench/policy_eval.py``), the bursts at full load
    filled the cheapest pools with relaxed traffic after tight requests had
    been admitted there, and the tight class lost 15-24 points.

    It is the request that must break the promise: when the forecast puts
    the batch past it with or without the request (a burst of prompts
    stretches every step), a request whose own prefill is shorter than a
    step at the promised pace still joins. Keeping it off would save the
    running sequences nothing and send it to a costlier pool: on the
    evaluation traces at ½ load, a few percent of the fast pool's requests
    went to an NPU at a small batch that way (``docs/benchmarks.md``). A longer prefill stalls every running sequence, so that
    request is still kept off."""

    name = "predicted-slo"

    def __init__(self, margin: float = 0.1, ttft_ms: float | None = None, tpot_ms: float | None = None,
                 protect_in_flight: bool = True):
        self.scale = 1.0 - margin
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms
        self.protect_in_flight = protect_in_flight

    def _held(self, cand) -> float | None:
        """The tightest TPOT promised to a sequence running on the pool, when protected."""
        return cand.pool.tightest_tpot_ms if self.protect_in_flight else None

    def promised_tpot_ms(self, shape):
        return _targets(shape, self.ttft_ms, self.tpot_ms)[1]

    def _breaks_promise(self, pred, held: float) -> bool:
        """Whether joining breaks the TPOT ``held`` for a running sequence (see the class docstring)."""
        limit = self.scale * held
        return pred.tpot_ms > limit and (pred.tpot_without_ms <= limit or pred.own_prefill_ms > limit)

    def keep(self, shape, cand):
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        pred = cand.prediction
        if pred is None:  # nothing to judge by: kept only for a request without targets
            return ttft is None and tpot is None
        if ttft is not None and pred.ttft_ms > self.scale * ttft:
            return False
        if tpot is not None and pred.tpot_ms > self.scale * tpot:
            return False
        held = self._held(cand)
        return held is None or not self._breaks_promise(pred, held)

    def describe(self, shape):
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        parts = [f"ttft ≤ {ttft:g} ms" if ttft is not None else "", f"tpot ≤ {tpot:g} ms" if tpot is not None else "",
                 "no running sequence's tpot target broken" if self.protect_in_flight else ""]
        return f"predicted SLO (margin {1 - self.scale:g}) " + ", ".join(p for p in parts if p)

    def why(self, shape, cand):
        pred = cand.prediction
        if pred is None:
            return "slo: no forecast"
        ttft, tpot = _targets(shape, self.ttft_ms, self.tpot_ms)
        if ttft is not None and pred.ttft_ms > self.scale * ttft:
            return f"slo: ttft {pred.ttft_ms:.0f} > {self.scale * ttft:.0f} ms"
        if tpot is not None and pred.tpot_ms > self.scale * tpot:
            return f"slo: tpot {pred.tpot_ms:.1f} > {self.scale * tpot:.1f} ms"
        limit = self.scale * self._held(cand)
        if pred.tpot_without_ms <= limit:
            return f"slo: tpot {pred.tpot_ms:.1f} > {limit:.1f} ms a running sequence needs"
        return f"slo: prefill {pred.own_prefill_ms:.0f} ms > {limit:.1f} ms a running sequence needs"


class HeadroomFilter:
    """Keeps room for tight-SLO traffic on the pools that can serve it.

    A request is *tight* when its TTFT target is at most ``ttft_ms`` or its
    TPOT target at most ``tpot_ms`` (the protected class; by default the
    routing's ``slo`` targets). A relaxed request (looser targets, or none)
    may join a pool that can serve tight traffic (its batch-1 cell meets the
    tight targets) only while the pool, with it, is still predicted to meet
    the tight targets with ``margin``: bulk traffic fills the fast pool up to
    the point where tight traffic would miss, no further.
    """

    name = "headroom"

    def __init__(self, margin: float = 0.1, ttft_ms: float | None = None, tpot_ms: float | None = None):
        self.scale = 1.0 - margin
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms

    def _tight(self, shape: RequestShape) -> bool:
        return ((self.ttft_ms is not None and shape.slo_ttft_ms is not None and shape.slo_ttft_ms <= self.ttft_ms)
                or (self.tpot_ms is not None and shape.slo_tpot_ms is not None and shape.slo_tpot_ms <= self.tpot_ms))

    def _serves_tight(self, shape: RequestShape, cand: Candidate) -> bool:
        prof = cand.pool.profile
        cell = prof.lookup(1, shape.total_tokens) if prof is not None else None
        if cell is None or cell.tpot_ms is None or cell.ttft_ms is None:
            return False
        return ((self.ttft_ms is None or cell.ttft_ms <= self.ttft_ms)
                and (self.tpot_ms is None or cell.tpot_ms <= self.tpot_ms))

    def keep(self, shape, cand):
        pred = cand.prediction
        if pred is None or (self.ttft_ms is None and self.tpot_ms is None) or self._tight(shape):
            return True
        if (self.ttft_ms is None or pred.ttft_ms <= self.scale * self.ttft_ms) and (
                self.tpot_ms is None or pred.tpot_ms <= self.scale * self.tpot_ms):
            return True
        return not self._serves_tight(shape, cand)

    def describe(self, shape):
        return "headroom for tight-SLO traffic"

    def why(self, shape, cand):
        return "headroom: kept for tight-SLO traffic"

    def promised_tpot_ms(self, shape):
        return None


class MaxScorePicker:
    """Highest total score first; ties keep the fleet's order."""

    name = "max-score"

    def pick(self, ranked):
        return sorted(ranked, key=_score, reverse=True)  # stable: ties keep their order


class RoundRobinPicker:
    """Rotates through eligible pools in name order. Its cursor is the one piece
    of state, owned by this instance (one per router, so one per simulation)."""

    name = "round-robin"

    def __init__(self):
        self._turns = count()

    def pick(self, ranked):
        ordered = sorted(ranked, key=lambda r: r.name)
        k = next(self._turns) % len(ordered)
        return ordered[k:] + ordered[:k]


class RandomPicker:
    """A uniformly random order drawn from the injected RNG."""

    name = "random"

    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, ranked):
        return self.rng.sample(ranked, len(ranked))
