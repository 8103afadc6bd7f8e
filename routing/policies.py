"""Named routing policies and the scorers, filters and pickers they are built from.

Metric scorers (``efficiency``, ``cost``, ``latency``) give the pool with the
lowest metric 1 and every other pool ``best / value``; a pool with no profile
cell for the shape (or no value for the metric) gets ``NEUTRAL``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from itertools import count

from routing.framework import Candidate, RankedPool, SchedulingProfile
from routing.shape import RequestShape

NEUTRAL = 0.5


class _LowerIsBetter:
    """Scores ``best / value`` of a per-pool metric where lower is better."""

    name = ""

    def metric(self, shape: RequestShape, cand: Candidate | RankedPool) -> float | None:
        raise NotImplementedError

    def score(self, shape: RequestShape, cands: Sequence[Candidate]) -> list[float]:
        values = [self.metric(shape, c) for c in cands]
        known = [v for v in values if v is not None]
        if not known:
            return [NEUTRAL] * len(values)
        best = min(known)
        return [NEUTRAL if v is None else 1.0 if v <= best else best / v for v in values]

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


class SloFilter:
    """Keeps pools whose predicted TTFT and TPOT meet the targets. The request's
    own targets win over the configured ones; a pool with no prediction for a
    set target is dropped; with no targets at all every pool is kept."""

    name = "slo"

    def __init__(self, ttft_ms: float | None = None, tpot_ms: float | None = None):
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms

    def _targets(self, shape: RequestShape) -> tuple[float | None, float | None]:
        ttft = shape.slo_ttft_ms if shape.slo_ttft_ms is not None else self.ttft_ms
        tpot = shape.slo_tpot_ms if shape.slo_tpot_ms is not None else self.tpot_ms
        return ttft, tpot

    def keep(self, shape, cand):
        ttft, tpot = self._targets(shape)
        cell = cand.cell
        if ttft is not None and (cell is None or cell.ttft_ms is None or cell.ttft_ms > ttft):
            return False
        if tpot is not None and (cell is None or cell.tpot_ms is None or cell.tpot_ms > tpot):
            return False
        return True

    def describe(self, shape):
        ttft, tpot = self._targets(shape)
        parts = [f"ttft ≤ {ttft:g} ms" if ttft is not None else "", f"tpot ≤ {tpot:g} ms" if tpot is not None else ""]
        return "SLO " + ", ".join(p for p in parts if p)


class MaxScorePicker:
    """Highest total score first; ties keep the fleet's order."""

    name = "max-score"

    def pick(self, ranked):
        return sorted(ranked, key=lambda r: -r.score)


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


SCORERS = {s.name: s for s in (EfficiencyScorer, CostScorer, LatencyScorer, LoadScorer)}

# policy name -> default scorer weights of its primary profile (None = picker only)
_WEIGHTS: dict[str, dict[str, float] | None] = {
    "efficiency": {"efficiency": 1.0},
    "cost": {"cost": 1.0},
    "slo-efficiency": {"efficiency": 1.0},
    "latency": {"latency": 1.0},
    "least-load": {"load": 1.0},
    "round-robin": None,
    "random": None,
}
POLICIES: tuple[str, ...] = tuple(_WEIGHTS)


def takes_scorers(policy: str) -> bool:
    return _WEIGHTS[policy] is not None


def build_policy(
    name: str,
    *,
    weights: Mapping[str, float] | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    rng: random.Random | None = None,
) -> tuple[SchedulingProfile, ...]:
    """The scheduling profiles of policy ``name``, tried in order.

    ``weights`` are merged over the policy's defaults (weight 0 drops a
    scorer). ``slo-efficiency`` ranks by J/token among pools meeting the SLO
    and falls back to a latency ranking when none does.
    """
    if name not in _WEIGHTS:
        raise ValueError(f"unknown policy '{name}'; valid: {', '.join(POLICIES)}")
    if name == "round-robin":
        return (SchedulingProfile(name, (), (), RoundRobinPicker()),)
    if name == "random":
        return (SchedulingProfile(name, (), (), RandomPicker(rng or random.Random())),)
    if unknown := set(weights or {}) - set(SCORERS):
        raise ValueError(f"unknown scorer '{min(unknown)}'; valid: {', '.join(SCORERS)}")
    merged = {**_WEIGHTS[name], **(weights or {})}
    scorers = tuple((SCORERS[s](), w) for s, w in merged.items() if w > 0)
    if not scorers:
        raise ValueError(f"policy '{name}' has no scorer with a positive weight")
    if name != "slo-efficiency":
        return (SchedulingProfile(name, (), scorers, MaxScorePicker()),)
    return (
        SchedulingProfile(name, (SloFilter(slo_ttft_ms, slo_tpot_ms),), scorers, MaxScorePicker()),
        SchedulingProfile("latency", (), ((LatencyScorer(), 1.0),), MaxScorePicker()),
    )
