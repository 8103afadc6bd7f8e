"""Plugin types by name: what a routing YAML's ``plugins:`` list may hold.

Each type is a filter, a scorer or a picker, with a pydantic model of its
``parameters`` (unknown keys are errors). SLO targets a plugin takes default
to the routing's ``slo`` section; ``random`` draws from the router's RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from routing import policies as p

Kind = Literal["filter", "scorer", "picker"]
_STRICT = ConfigDict(extra="forbid")


class NoParameters(BaseModel):
    model_config = _STRICT


class TargetParameters(BaseModel):
    """Latency targets; unset ones default to the routing's ``slo``."""

    model_config = _STRICT
    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)


class MarginParameters(TargetParameters):
    margin: float = Field(0.1, ge=0, lt=1, description="predicted must be <= (1 - margin) × target")


class PredictedSloParameters(MarginParameters):
    protect_in_flight: bool = Field(True, description="also keep the tightest TPOT target promised to "
                                    "a sequence the pool is running")


class PackingParameters(BaseModel):
    """The TPOT target a pool is packed up to; unset, the routing's ``slo``."""

    model_config = _STRICT
    tpot_ms: float | None = Field(None, gt=0)
    margin: float = Field(0.1, ge=0, lt=1, description="packed up to (1 - margin) × the TPOT target")


@dataclass(frozen=True)
class BuildContext:
    """What plugins may take from the routing config and the router's owner."""

    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    rng: random.Random


@dataclass(frozen=True)
class PluginType:
    kind: Kind
    parameters: type[BaseModel]
    build: Callable[[Any, BuildContext], Any]
    predicts: bool = False  # reads the latency predictor's forecast


def _targets(params: TargetParameters, ctx: BuildContext) -> dict[str, float | None]:
    return {
        "ttft_ms": params.ttft_ms if params.ttft_ms is not None else ctx.slo_ttft_ms,
        "tpot_ms": params.tpot_ms if params.tpot_ms is not None else ctx.slo_tpot_ms,
    }


def _tpot(params: PackingParameters, ctx: BuildContext) -> float | None:
    return params.tpot_ms if params.tpot_ms is not None else ctx.slo_tpot_ms


def _plain(cls) -> Callable[[Any, BuildContext], Any]:
    return lambda params, ctx: cls()


PLUGINS: dict[str, PluginType] = {
    # scorers (score in [0, 1], higher is better)
    "efficiency": PluginType("scorer", NoParameters, _plain(p.EfficiencyScorer)),
    "cost": PluginType("scorer", NoParameters, _plain(p.CostScorer)),
    "latency": PluginType("scorer", NoParameters, _plain(p.LatencyScorer)),
    "load": PluginType("scorer", NoParameters, _plain(p.LoadScorer)),
    "prefill-queue": PluginType("scorer", NoParameters, _plain(p.PrefillQueueScorer)),
    "marginal-energy": PluginType("scorer", NoParameters, _plain(p.MarginalEnergyScorer), predicts=True),
    "marginal-cost": PluginType("scorer", NoParameters, _plain(p.MarginalCostScorer), predicts=True),
    "packed-energy": PluginType(
        "scorer", PackingParameters, lambda prm, ctx: p.PackedEnergyScorer(prm.margin, _tpot(prm, ctx))),
    "packed-cost": PluginType(
        "scorer", PackingParameters, lambda prm, ctx: p.PackedCostScorer(prm.margin, _tpot(prm, ctx))),
    "slo-violation": PluginType(
        "scorer", TargetParameters, lambda prm, ctx: p.ViolationScorer(**_targets(prm, ctx)), predicts=True),
    # filters
    "slo": PluginType("filter", TargetParameters, lambda prm, ctx: p.SloFilter(**_targets(prm, ctx))),
    "predicted-slo": PluginType(
        "filter", PredictedSloParameters,
        lambda prm, ctx: p.PredictedSloFilter(prm.margin, **_targets(prm, ctx),
                                              protect_in_flight=prm.protect_in_flight), predicts=True),
    "headroom": PluginType(
        "filter", MarginParameters,
        lambda prm, ctx: p.HeadroomFilter(prm.margin, **_targets(prm, ctx)), predicts=True),
    # pickers
    "max-score": PluginType("picker", NoParameters, _plain(p.MaxScorePicker)),
    "round-robin": PluginType("picker", NoParameters, _plain(p.RoundRobinPicker)),
    "random": PluginType("picker", NoParameters, lambda prm, ctx: p.RandomPicker(ctx.rng)),
}

SCORERS: tuple[str, ...] = tuple(n for n, t in PLUGINS.items() if t.kind == "scorer")
