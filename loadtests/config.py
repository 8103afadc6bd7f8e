"""What one load-test run does, validated: the contract shared by the CLI and scenario files."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loadtests.metrics import Targets

ArrivalMode = Literal["constant", "poisson", "gamma", "closed", "ramp", "sweep", "trace"]
DEFAULT_REQUESTS = 200  # synthetic data, when neither a duration nor a request count is given; a trace replays whole


class LoadSpec(BaseModel):
    """How requests arrive and when the run stops.

    ``rate`` is requests/s (the starting rate of a ramp or sweep). A sweep
    runs steps of ``duration_s``/``requests`` each at Poisson arrivals,
    multiplying the rate by ``sweep_factor`` until request throughput grows
    by less than ``sweep_min_gain`` over the best step so far.
    """

    model_config = ConfigDict(extra="forbid")

    arrival: ArrivalMode = "poisson"
    rate: float | None = Field(default=None, gt=0)
    rate_end: float | None = Field(default=None, gt=0)
    burstiness: float = Field(default=1.0, gt=0)
    concurrency: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, ge=1)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    sweep_factor: float = Field(default=1.5, gt=1)
    sweep_min_gain: float = Field(default=0.05, ge=0)
    sweep_max_steps: int = Field(default=8, ge=1, le=50)

    @model_validator(mode="after")
    def _check(self) -> "LoadSpec":
        if self.arrival in ("constant", "poisson", "gamma", "ramp", "sweep") and self.rate is None:
            raise ValueError(f"arrival {self.arrival!r} needs a rate")
        if self.arrival == "closed" and self.concurrency is None:
            raise ValueError("arrival 'closed' needs a concurrency")
        if self.arrival == "ramp" and (self.rate_end is None or self.duration_s is None):
            raise ValueError("arrival 'ramp' needs rate_end and duration_s")
        return self


class DataSpec(BaseModel):
    """What each request asks for: a synthetic length profile or a trace's records."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["synthetic", "trace"] = "synthetic"
    trace: str | None = None
    lengths: Literal["chat", "long-doc", "mixed"] = "chat"
    prompt_tokens: int | None = Field(default=None, ge=1)
    output_tokens: int | None = Field(default=None, ge=1)
    shared_prefix_tokens: int = Field(default=0, ge=0)
    tokenizer: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "DataSpec":
        if (self.dataset == "trace") != (self.trace is not None):
            raise ValueError("dataset 'trace' and a trace file go together")
        return self


class RunSpec(BaseModel):
    """One run: target, load, data and latency targets."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="run", pattern=r"^[A-Za-z0-9._-]+$")
    base_url: str = "http://127.0.0.1:8000"  # the server's root; an OpenAI-style ".../v1" is accepted too
    model: str | None = None  # None: the trace's, or the server's first model
    api_key: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    stream: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=300.0, gt=0)
    load: LoadSpec = Field(default_factory=lambda: LoadSpec(arrival="poisson", rate=1.0))
    data: DataSpec = Field(default_factory=DataSpec)
    slo: Targets = Field(default_factory=Targets)
    energy: bool = True  # snapshot /v1/fleet before and after

    @field_validator("base_url")
    @classmethod
    def _server_root(cls, v: str) -> str:
        """Every client path starts with /v1, so a base URL given the OpenAI way loses its /v1 here."""
        root = v.rstrip("/")
        return root.removesuffix("/v1").rstrip("/") if root.endswith("/v1") else root

    @model_validator(mode="after")
    def _check(self) -> "RunSpec":
        if self.data.dataset == "synthetic" and self.load.duration_s is None and self.load.requests is None:
            self.load.requests = DEFAULT_REQUESTS
        replay = self.load.arrival == "trace"
        if replay and self.data.dataset != "trace":
            raise ValueError("arrival 'trace' replays a trace: set data.dataset to 'trace'")
        if self.data.dataset == "trace" and self.load.arrival not in ("trace", "closed"):
            raise ValueError("a trace dataset runs with arrival 'trace' (replay) or 'closed'")
        return self


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the offending key (``runs.1.load.rate: ...``)."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        lines.append(f"{key or '(top level)'}: {item['msg']}")
    return "\n".join(lines)
