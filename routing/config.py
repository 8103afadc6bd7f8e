"""The routing YAML: policy (a preset, or plugins and scheduling profiles),
SLO targets, the latency predictor, spill-over.

Validated once at load time with pydantic (unknown keys are errors, each
error names its key); the router built from it does no validation per
decision. ``policy: NAME`` is shorthand for the preset's expansion
(``routing.presets``); ``plugins`` + ``schedulingProfiles`` spell a policy
out, in the manner of gateway-api-inference-extension's scheduler config.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing.errors import RoutingConfigError
from routing.framework import Router, SchedulingProfile
from routing.plugins import PLUGINS, SCORERS, BuildContext
from routing.policies import MaxScorePicker
from routing.predictor import LatencyPredictor
from routing.presets import DEFAULT_POLICY, POLICIES, expand, takes_scorers

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


class PredictorConfig(BaseModel):
    """Online correction of the latency predictor (``routing.predictor``)."""

    model_config = _STRICT
    alpha: float = Field(0.1, gt=0, le=1, description="weight of one finished request")
    min_factor: float = Field(0.25, gt=0, le=1)
    max_factor: float = Field(4.0, ge=1)


class PluginSpec(BaseModel):
    """One plugin instance: a registered ``type``, an optional ``name`` (default: the type)."""

    model_config = _STRICT
    type: str
    name: str | None = None
    parameters: dict[str, Any] = {}

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in PLUGINS:
            raise ValueError(f"unknown plugin type '{v}'; valid: {', '.join(PLUGINS)}")
        return v

    @model_validator(mode="after")
    def _valid_parameters(self) -> "PluginSpec":
        try:
            PLUGINS[self.type].parameters.model_validate(self.parameters)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"parameters.{key}: {err['msg']}") from None
        return self

    @property
    def ref(self) -> str:
        return self.name or self.type


class PluginRef(BaseModel):
    model_config = _STRICT
    pluginRef: str
    weight: float | None = Field(None, ge=0)


class ProfileSpec(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1)
    plugins: list[PluginRef] = Field(min_length=1)


class RoutingConfig(BaseModel):
    model_config = _STRICT
    policy: str = DEFAULT_POLICY  # a preset; with schedulingProfiles, only a label
    slo: SloConfig = SloConfig()
    scorers: dict[str, float] = {}  # weights over a preset's
    plugins: list[PluginSpec] | None = None
    schedulingProfiles: list[ProfileSpec] | None = None
    predictor: PredictorConfig = PredictorConfig()
    spillover: SpilloverConfig = SpilloverConfig()
    seed: int | None = None  # seeds the RNG of policy `random` when none is injected

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
    def _valid_policy(self) -> "RoutingConfig":
        if (self.plugins is None) != (self.schedulingProfiles is None):
            raise ValueError("plugins and schedulingProfiles: give both, or neither (then `policy` names a preset)")
        if self.schedulingProfiles is None:
            if self.policy not in POLICIES:
                raise ValueError(f"policy: unknown policy '{self.policy}'; valid: {', '.join(POLICIES)}")
            if self.scorers and not takes_scorers(self.policy):
                raise ValueError(f"scorers: policy '{self.policy}' ranks without scorers")
        elif self.scorers:
            raise ValueError("scorers: only adjusts a preset; set weights in schedulingProfiles")
        _check(self.expanded())
        return self

    def expanded(self) -> dict:
        """``plugins`` and ``schedulingProfiles`` as dicts: the explicit ones, or the preset's."""
        if self.schedulingProfiles is None:
            return expand(self.policy, self.scorers)
        return {
            "plugins": [p.model_dump(exclude_defaults=True) for p in self.plugins],
            "schedulingProfiles": [p.model_dump(exclude_none=True) for p in self.schedulingProfiles],
        }


def _check(doc: dict) -> None:
    """Cross-references of an expansion; errors name the key path."""
    by_name: dict[str, str] = {}
    for i, pl in enumerate(doc["plugins"]):
        ref = pl.get("name") or pl["type"]
        if ref in by_name:
            raise ValueError(f"plugins[{i}].name: a second plugin named '{ref}'")
        by_name[ref] = pl["type"]
    profiles = doc["schedulingProfiles"]
    if not profiles:
        raise ValueError("schedulingProfiles: needs at least one profile")
    for i, pr in enumerate(profiles):
        where = f"schedulingProfiles[{i}]"
        pickers = scorers = filters = 0
        for j, r in enumerate(pr["plugins"]):
            ref = r["pluginRef"]
            if ref not in by_name:
                raise ValueError(f"{where}.plugins[{j}].pluginRef: unknown plugin '{ref}'; "
                                 f"defined: {', '.join(by_name)}")
            kind = PLUGINS[by_name[ref]].kind
            if kind != "scorer" and r.get("weight") is not None:
                raise ValueError(f"{where}.plugins[{j}].weight: '{ref}' is a {kind}; only scorers take a weight")
            pickers += kind == "picker"
            filters += kind == "filter"
            scorers += kind == "scorer" and r.get("weight", 1.0) > 0
        if pickers > 1:
            raise ValueError(f"{where}.plugins: more than one picker")
        uses_max = pickers == 0 or any(by_name[r["pluginRef"]] == "max-score" for r in pr["plugins"])
        if uses_max and not scorers:
            raise ValueError(f"{where}: profile '{pr['name']}' has no scorer with a positive weight")
        if i == len(profiles) - 1 and filters:
            raise ValueError(f"{where}: the last scheduling profile must have no filters (it is the fallback)")


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
        key = _key(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise RoutingConfigError(f"{where}: {key + ': ' if key else ''}{msg}") from None


def _key(loc: tuple) -> str:
    """pydantic's error location as a key path: ``plugins[2].parameters``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def build_profiles(config: RoutingConfig, rng: random.Random) -> tuple[tuple[SchedulingProfile, ...], bool]:
    """The scheduling profiles of ``config`` and whether any plugin reads forecasts."""
    doc = config.expanded()
    ctx = BuildContext(config.slo.ttft_ms, config.slo.tpot_ms, rng)
    built, predicts = {}, False
    for pl in doc["plugins"]:
        kind = PLUGINS[pl["type"]]
        params = kind.parameters.model_validate(pl.get("parameters", {}))
        built[pl.get("name") or pl["type"]] = (kind, kind.build(params, ctx))
    profiles = []
    for pr in doc["schedulingProfiles"]:
        filters, scorers, picker = [], [], None
        for r in pr["plugins"]:
            kind, plugin = built[r["pluginRef"]]
            predicts |= kind.predicts
            if kind.kind == "filter":
                filters.append(plugin)
            elif kind.kind == "scorer":
                scorers.append((plugin, r.get("weight", 1.0)))
            else:
                picker = plugin
        profiles.append(SchedulingProfile(pr["name"], tuple(filters), tuple(scorers), picker or MaxScorePicker()))
    return tuple(profiles), predicts


def build_policy(
    name: str,
    *,
    weights: Mapping[str, float] | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    rng: random.Random | None = None,
) -> tuple[SchedulingProfile, ...]:
    """The scheduling profiles of preset ``name``, tried in order (a
    ``ValueError`` names what is wrong). Plugins that read forecasts need a
    router with a predictor: ``build_router`` wires one."""
    try:
        config = load_routing_config({"policy": name, "scorers": dict(weights or {}),
                                      "slo": {"ttft_ms": slo_ttft_ms, "tpot_ms": slo_tpot_ms}})
    except RoutingConfigError as e:
        raise ValueError(str(e).removeprefix("routing config: ")) from None
    return build_profiles(config, rng or random.Random())[0]


def build_router(
    config: RoutingConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    predictor: LatencyPredictor | None = None,
) -> Router:
    """A router for ``config`` with the clock (and RNG) injected. ``predictor``
    keeps learned corrections across routing changes (the gateway passes its
    own, and every decision then carries forecasts); without one, a fresh one
    from ``config.predictor`` is made when a plugin reads forecasts."""
    profiles, predicts = build_profiles(config, rng or random.Random(config.seed))
    if predicts and predictor is None:
        predictor = LatencyPredictor(**config.predictor.model_dump())
    return Router(
        profiles,
        saturation=config.spillover.saturation,
        retry_after_s=config.spillover.retry_after_s,
        clock=clock,
        predictor=predictor,
    )
