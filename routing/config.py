"""The routing YAML: which policy, SLO targets, scorer weights, spill-over.

Validated once at load time with pydantic (unknown keys are errors); the
router built from it does no validation per decision.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing.errors import RoutingConfigError
from routing.framework import Router
from routing.policies import POLICIES, SCORERS, build_policy, takes_scorers

_STRICT = ConfigDict(extra="forbid")


class SloConfig(BaseModel):
    """Default latency targets; a request's own targets override them."""

    model_config = _STRICT
    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)


class SpilloverConfig(BaseModel):
    """A pool counts as saturated at ``saturation`` × its capacity."""

    model_config = _STRICT
    saturation: float = Field(1.0, gt=0)
    retry_after_s: float = Field(1.0, gt=0)


class RoutingConfig(BaseModel):
    model_config = _STRICT
    policy: str = "efficiency"
    slo: SloConfig = SloConfig()
    scorers: dict[str, float] = {}
    spillover: SpilloverConfig = SpilloverConfig()
    seed: int | None = None  # seeds the RNG of policy `random` when none is injected

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"unknown policy '{v}'; valid: {', '.join(POLICIES)}")
        return v

    @field_validator("scorers")
    @classmethod
    def _known_scorers(cls, v: dict[str, float]) -> dict[str, float]:
        for name, weight in v.items():
            if name not in SCORERS:
                raise ValueError(f"unknown scorer '{name}'; valid: {', '.join(SCORERS)}")
            if weight < 0:
                raise ValueError(f"scorer '{name}' has negative weight {weight}")
        return v

    @model_validator(mode="after")
    def _scorers_fit_policy(self) -> "RoutingConfig":
        if self.scorers and not takes_scorers(self.policy):
            raise ValueError(f"scorers: policy '{self.policy}' ranks without scorers")
        if self.scorers and takes_scorers(self.policy):
            build_policy(self.policy, weights=self.scorers)  # e.g. every weight 0
        return self


def load_routing_config(source: str | Path | Mapping) -> RoutingConfig:
    """Parse a YAML file (path) or a dict; errors name the bad key."""
    where = "routing config"
    if isinstance(source, (str, Path)):
        where = str(source)
        try:
            source = yaml.safe_load(Path(source).read_text()) or {}
        except yaml.YAMLError as e:
            raise RoutingConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(source, Mapping):
        raise RoutingConfigError(f"{where}: expected a mapping at the top level")
    try:
        return RoutingConfig.model_validate(dict(source))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise RoutingConfigError(f"{where}: {key + ': ' if key else ''}{msg}") from None


def build_router(
    config: RoutingConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> Router:
    """A router for ``config`` with the clock (and RNG) injected."""
    profiles = build_policy(
        config.policy,
        weights=config.scorers,
        slo_ttft_ms=config.slo.ttft_ms,
        slo_tpot_ms=config.slo.tpot_ms,
        rng=rng or random.Random(config.seed),
    )
    return Router(
        profiles,
        saturation=config.spillover.saturation,
        retry_after_s=config.spillover.retry_after_s,
        clock=clock,
    )
