"""One pool of the fleet, as written in the fleet YAML and validated at load."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from workers.serve_env import with_replica_env

EngineKind = Literal["vllm", "furiosa", "emulated"]

#: Ray resource names that mean something else than users expect.
_MISLEADING_RESOURCES = {
    "NPU": "Ray's 'NPU' resource means Huawei Ascend; use 'FURIOSA' (RNGD) or 'RBLN' (ATOM)",
}


class PowerSpec(BaseModel):
    """Which power meter a pool reads (see ``workers.power``)."""

    model_config = ConfigDict(extra="forbid")

    source: str = "modelled"
    options: dict[str, Any] = Field(default_factory=dict)


#: Request features (OpenAI parameters in effect) each engine honours; the router's capability filter
#: sends a request using any of them only to pools whose engine has them all.
ENGINE_CAPABILITIES: dict[str, frozenset[str]] = {
    "vllm": frozenset({"presence_penalty", "frequency_penalty", "logit_bias", "response_format", "logprobs",
                       "top_k", "min_p", "repetition_penalty", "min_tokens"}),
    "furiosa": frozenset(),
    "emulated": frozenset({"logprobs"}),  # exact: its sampler's uniform distribution (workers.emulation.text)
}


class FaultSpec(BaseModel):
    """Test-only faults of an emulated pool (``engine_args.fault``), for fault-injection tests and benchmarks.

    Never set these on a pool that serves users.
    """

    model_config = ConfigDict(extra="forbid")

    hang_after_tokens: int | None = Field(
        default=None, ge=0, description="stop sending (and never finish) after this many tokens; 0: before the first"
    )


class EmulatedEngineArgs(BaseModel):
    """``engine_args`` of an emulated pool: what ``EmulatedEngine`` takes from the fleet file.

    ``max_batch`` left out defaults to the pool's ``max_ongoing_requests``,
    capped at the hardware's largest compiled batch bucket (RNGD, ATOM); the
    modelled profiles (``fleet.profiles``) assume the same.
    """

    model_config = ConfigDict(extra="forbid")

    max_batch: int | None = Field(default=None, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    time_scale: float = Field(default=1.0, gt=0)
    fault: FaultSpec | None = None

    @field_validator("max_batch")
    @classmethod
    def _fits_buckets(cls, v: int | None, info: ValidationInfo) -> int | None:
        largest = (info.context or {}).get("largest_bucket")
        if v is not None and largest is not None and v > largest:
            raise ValueError(f"{v} exceeds the hardware's largest compiled batch bucket {largest}")
        return v


class AutoscalingSpec(BaseModel):
    """``autoscaling`` of a pool: replica bounds and delays, mapped to Ray Serve's
    ``autoscaling_config`` (``deploy.serve_config``) and run by ``routing.scaler``.

    The pool's ``replicas`` is then the count at start, clamped into the bounds.
    ``target_ongoing_requests`` left out: the largest batch whose modelled or
    measured latency meets the routing SLOs (``fleet.autoscaling``).
    ``efficiency``: scaled fleet-wide by the efficiency-aware scaler (grow the
    pool with the least J/token first, shed the least efficient); false: Ray
    Serve's own queue-length rule for this pool alone.
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float | None = Field(default=None, gt=0, description="sequences per replica")
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    startup_s: float = Field(default=60.0, ge=0, description="seconds from asking for a replica to its serving")
    efficiency: bool = True

    @field_validator("max_replicas")
    @classmethod
    def _max_over_min(cls, v: int, info: ValidationInfo) -> int:
        if v < info.data.get("min_replicas", 0):
            raise ValueError(f"{v} is below min_replicas ({info.data['min_replicas']})")
        return v


#: Keys a real engine's ``engine_args`` must not hold: the pool sets them.
_RESERVED_ENGINE_ARGS = {"model": "set by the pool's 'model' key"}


class PoolSpec(BaseModel):
    """A pool: one Ray Serve deployment of one engine on one hardware type."""

    model_config = ConfigDict(extra="forbid")

    name: str
    hardware: str
    engine: EngineKind
    models: list[str] = Field(min_length=1, description="served model names clients ask for")
    model: str = Field(description="what the engine loads: a path, a hub id, 'tiny-llama', or a model spec key")
    engine_args: dict[str, Any] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1)
    resources: dict[str, float] = Field(default_factory=dict)
    max_ongoing_requests: int = Field(default=256, ge=1)
    price_per_hour: float | None = Field(default=None, ge=0, description="USD; default: the hardware catalog's")
    power: PowerSpec = Field(default_factory=PowerSpec)
    env: dict[str, str] = Field(default_factory=dict)
    autoscaling: AutoscalingSpec | None = Field(default=None, description="replicas then follow load")

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", v):
            raise ValueError("pool names use lowercase letters, digits and '-' (max 63)")
        return v

    @field_validator("resources")
    @classmethod
    def _resources_are_clear(cls, v: dict[str, float]) -> dict[str, float]:
        for key, amount in v.items():
            if key in _MISLEADING_RESOURCES:
                raise ValueError(_MISLEADING_RESOURCES[key])
            if amount < 0:
                raise ValueError(f"resource {key!r} must be >= 0")
        return v

    @field_validator("engine_args")
    @classmethod
    def _engine_args_fit(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Catch at load what would otherwise fail in every replica's constructor."""
        if info.data.get("engine") == "emulated":
            context = {"largest_bucket": _largest_bucket(info.data["hardware"])} if "hardware" in info.data else None
            # A nested ValidationError keeps its locations: pools.N.engine_args.max_batch.
            return EmulatedEngineArgs.model_validate(v, context=context).model_dump(exclude_unset=True)
        for key, why in _RESERVED_ENGINE_ARGS.items():
            if key in v:
                raise ValueError(f"{key!r} is {why}")
        if info.data.get("engine") == "furiosa" and not isinstance(v.get("devices", ""), str):
            raise ValueError("devices is a string such as 'npu:0' or 'npu:0,npu:1'")
        return v

    @field_validator("hardware")
    @classmethod
    def _hardware_known(cls, v: str) -> str:
        from workers.hardware import CatalogError, get_hardware

        try:
            get_hardware(v)
        except CatalogError as exc:  # pydantic reports ValueErrors with the key's path
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _target_admissible(self) -> "PoolSpec":
        a = self.autoscaling
        if a is not None and a.target_ongoing_requests and a.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(f"autoscaling.target_ongoing_requests: {a.target_ongoing_requests:g} exceeds "
                             f"max_ongoing_requests ({self.max_ongoing_requests}): the pool would refuse load "
                             "before it scales")
        return self

    @property
    def start_replicas(self) -> int:
        """Replicas at start: ``replicas``, clamped into the autoscaling bounds where set."""
        a = self.autoscaling
        return min(max(self.replicas, a.min_replicas), a.max_replicas) if a else self.replicas

    @model_validator(mode="after")
    def _emulated_model_known(self) -> "PoolSpec":
        if self.engine == "emulated":
            from workers.hardware import CatalogError, get_model

            try:
                get_model(self.model)
            except CatalogError as exc:
                raise ValueError(f"model: {exc}") from None
        return self

    def emulated_engine_args(self) -> dict[str, Any]:
        """The emulated engine's keyword arguments, with ``max_batch``'s default filled in."""
        args = dict(self.engine_args)
        if args.get("max_batch") is None:
            largest = _largest_bucket(self.hardware)
            args["max_batch"] = min(self.max_ongoing_requests, largest or self.max_ongoing_requests)
        return args

    def capabilities(self) -> frozenset[str]:
        """Request features this pool honours: its engine's, and tools where a vLLM pool names a parser."""
        if self.engine == "vllm" and self.engine_args.get("tool_call_parser"):
            return ENGINE_CAPABILITIES["vllm"] | {"tools"}
        return ENGINE_CAPABILITIES[self.engine]

    @property
    def emulated(self) -> bool:
        return self.engine == "emulated"

    def ray_actor_options(self) -> dict[str, Any]:
        """Ray actor options: ``CPU``/``GPU`` become num_cpus/num_gpus, the rest custom resources;
        ``env`` and the Serve settings of every hetserve replica (``workers.serve_env``) its runtime env."""
        custom = {k: v for k, v in self.resources.items() if k not in ("CPU", "GPU")}
        opts: dict[str, Any] = {
            "num_cpus": self.resources.get("CPU", 0),
            "num_gpus": self.resources.get("GPU", 0),
        }
        if custom:
            opts["resources"] = custom
        if self.env:
            opts["runtime_env"] = {"env_vars": dict(self.env)}
        return with_replica_env(opts)



def _largest_bucket(hardware: str) -> int | None:
    """The largest compiled batch of ``hardware`` (RNGD, ATOM), None where batches are free."""
    from workers.hardware import get_hardware

    buckets = get_hardware(hardware).batch_buckets
    return buckets[-1] if buckets else None
