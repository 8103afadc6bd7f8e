"""The fleet file: gateway options, routing and pools, validated at load.

The one schema of a fleet, shared by the gateway, the simulator, calibration
and the planner; its ``routing`` section is routing's own ``RoutingConfig``.

An invalid file fails at start with :class:`FleetConfigError`, whose message
names the bad key by its path (``pools.2.hardware: unknown hardware 'h1000'``).
"""

from __future__ import annotations

import re

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from routing.config import RoutingConfig
from workers.spec import PoolSpec
from workers.tracing import TracingSpec

DEFAULT_FLEET = "default.yaml"
#: Requests Serve lets into the gateway deployment beyond ``gateway.max_ongoing_requests``: the
#: gateway answers those 429 itself (gateway/admission.py), so Serve's proxy never queues for it.
GATEWAY_HEADROOM = 64


class FleetConfigError(ValueError):
    """The fleet file is invalid; the message says where."""


class FailoverSpec(BaseModel):
    """Retrying a request on the next ranked pool, and ejecting pools that fail (see docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=2, ge=1, description="pools one request may try before its first byte")
    retry_budget_ratio: float = Field(
        default=0.2, ge=0, le=1, description="retries may be at most this share of the requests in the window"
    )
    retry_budget_min: int = Field(default=3, ge=0, description="retries always allowed per window, whatever the ratio")
    retry_budget_window_s: float = Field(default=10.0, gt=0)
    ejection_base_s: float = Field(default=2.0, gt=0, description="first ejection; each further one in a row adds this")
    ejection_max_s: float = Field(default=60.0, gt=0)


class TimeoutSpec(BaseModel):
    """How long the gateway waits on a pool before calling it hung (504 ``pool_timeout``, see docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    first_token_s: float = Field(
        default=120.0, gt=0, description="from sending a request to a pool to its first token; then the next pool"
    )
    idle_s: float = Field(default=60.0, gt=0, description="longest gap between two tokens of a stream")


class GatewaySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="plain keys (hashed at load); none here, in keys_file or in HETSERVE_API_KEYS: no authentication")
    keys_file: str | None = Field(default=None, description="YAML of keys with limits (gateway/auth.py), relative to the fleet file")
    max_ongoing_requests: int = Field(default=1024, ge=1)
    poll_interval_s: float = Field(default=1.0, gt=0)
    poll_timeout_s: float = Field(default=3.0, gt=0, description="a pool's stats poll that takes longer has failed")
    down_after_failed_polls: int = Field(
        default=2, ge=1, description="failed polls in a row after which a pool is down (unhealthy) until one succeeds"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="Ray resources the gateway replica asks for: pins it to the nodes holding them"
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode", description="where Ray Serve runs its HTTP proxies (Serve's proxy_location)"
    )
    relay_window_s: float = Field(
        default=0.05, ge=0, description="longest time engine deltas are merged for (see workers.relay); 0 = off"
    )
    record_trace: str | None = Field(default=None, description="append every completed request to this JSONL trace")
    max_body_bytes: int = Field(default=4 << 20, ge=1024, description="larger request bodies get 413")
    max_json_depth: int = Field(default=32, ge=2, description="bodies nesting arrays/objects deeper get 400")
    drain_timeout_s: float = Field(default=30.0, ge=0, description="SIGTERM: longest wait for requests in flight")
    shutdown_timeout_s: float = Field(default=40.0, gt=0, description="SIGTERM: longest wait for Serve and Ray to stop")
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    tracing: TracingSpec = Field(default_factory=TracingSpec)
    profiles: str | None = Field(default=None, description="directory of efficiency profiles (JSON), relative to the fleet file")
    pools: list[PoolSpec] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only fleet file version 1 exists")
        return v

    @field_validator("pools")
    @classmethod
    def _unique_names(cls, pools: list[PoolSpec]) -> list[PoolSpec]:
        seen: set[str] = set()
        for p in pools:
            if p.name in seen:
                raise ValueError(f"pool name {p.name!r} appears twice")
            seen.add(p.name)
        return pools

    def models(self) -> list[str]:
        """Served model names, in first-seen order."""
        return list(dict.fromkeys(m for p in self.pools for m in p.models))


_NAMED_KEY = re.compile(r"([A-Za-z_][\w.\[\]]*): ")


def describe_validation_error(exc: ValidationError) -> str:
    """Every error of a config model as ``key.path: message`` (the style of every config file of ours)."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        # A model validator cannot set a location, so it names the key first ("policy: ..."): join it.
        named = _NAMED_KEY.match(msg)
        if named and err["loc"]:
            where, msg = f"{where}.{named[1]}", msg[named.end():]
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def parse_fleet(data: Any, source: str = "fleet") -> FleetConfig:
    if not isinstance(data, dict):
        raise FleetConfigError(f"{source}: expected a mapping at the top level")
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise FleetConfigError(f"{source}: {describe_validation_error(exc)}") from None


def load_fleet(path: str | Path | None = None) -> tuple[FleetConfig, Path | None]:
    """Load a fleet file, or the embedded default fleet when ``path`` is None.

    Returns the config and the directory relative paths in it resolve against.
    """
    if path is None:
        ref = resources.files("fleet.fleets").joinpath(DEFAULT_FLEET)
        text, base = ref.read_text(), None
        source = f"embedded {DEFAULT_FLEET}"
    else:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise FleetConfigError(f"cannot read fleet file {path}: {exc.strerror}") from None
        base, source = path.parent, str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FleetConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_fleet(data, source), base
