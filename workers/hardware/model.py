"""Validated descriptions of a chip (``HardwareModel``) and an LLM (``ModelSpec``).

Figures are per chip; ``devices`` chips form one replica (e.g. an
ATOM-Max-style card of four ATOM chips), and the replica-level properties
multiply them out. Every figure is meant to carry a citation in ``sources``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_BYTES_PER_GB = 1e9


class HardwareModel(BaseModel):
    """Roofline figures of one accelerator (or CPU host) kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["gpu", "npu", "cpu"]
    vendor: str
    bf16_tflops: float = Field(gt=0, description="dense BF16/FP16 TFLOPS per chip")
    fp8_tflops: float | None = Field(default=None, gt=0, description="dense FP8 TFLOPS per chip")
    int8_tops: float | None = Field(default=None, gt=0, description="dense INT8 TOPS per chip")
    memory_gb: float = Field(gt=0, description="device memory per chip, GB")
    bandwidth_gbps: float = Field(gt=0, description="memory bandwidth per chip, GB/s")
    idle_watts: float = Field(ge=0, description="per chip")
    peak_watts: float = Field(gt=0, description="per chip (TDP or busiest published draw)")
    devices: int = Field(default=1, ge=1, description="chips per replica")
    mfu: float = Field(gt=0, le=1, description="achievable fraction of peak compute")
    mbu: float = Field(gt=0, le=1, description="achievable fraction of peak bandwidth")
    step_overhead_ms: float = Field(
        default=0.0, ge=0, description="fixed host/launch time per engine step"
    )
    memory_power_share: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="share of the dynamic power range a purely memory-bound step draws",
    )
    batch_buckets: tuple[int, ...] | None = None
    seq_buckets: tuple[int, ...] | None = None
    max_seq_len: int | None = Field(default=None, ge=1, description="compiled limit (NPUs)")
    price_per_hour_usd: float = Field(ge=0, description="per replica")
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("batch_buckets", "seq_buckets")
    @classmethod
    def _buckets(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must be null (dynamic shapes) or a non-empty list")
        if value[0] < 1 or list(value) != sorted(set(value)):
            raise ValueError("must be positive, strictly increasing integers")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HardwareModel:
        if self.peak_watts < self.idle_watts:
            raise ValueError("peak_watts must be >= idle_watts")
        if self.seq_buckets and self.max_seq_len and self.seq_buckets[-1] < self.max_seq_len:
            raise ValueError("seq_buckets must reach max_seq_len")
        unknown = sorted(set(self.sources) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"sources cite unknown fields: {unknown}")
        return self

    @property
    def static_shapes(self) -> bool:
        """True for compiled static-shape engines (NPUs): batches pay for their bucket."""
        return self.batch_buckets is not None

    @property
    def memory_bytes(self) -> float:
        """Device memory of the whole replica."""
        return self.memory_gb * _BYTES_PER_GB * self.devices

    @property
    def bandwidth_bytes_s(self) -> float:
        """Peak memory bandwidth of the whole replica."""
        return self.bandwidth_gbps * _BYTES_PER_GB * self.devices

    @property
    def idle_watts_replica(self) -> float:
        return self.idle_watts * self.devices

    @property
    def peak_watts_replica(self) -> float:
        return self.peak_watts * self.devices

    def peak_flops(self, bytes_per_param: float) -> float:
        """Replica FLOP/s for weights of ``bytes_per_param`` bytes.

        One-byte weights use FP8 where the chip has it, else INT8; anything
        wider (or a chip without 8-bit units) uses BF16.
        """
        tflops = self.bf16_tflops
        if bytes_per_param <= 1:
            tflops = self.fp8_tflops or self.int8_tops or self.bf16_tflops
        return tflops * 1e12 * self.devices


class ModelSpec(BaseModel):
    """The shape of a decoder-only transformer, enough for a roofline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params_b: float = Field(gt=0, description="parameters, billions")
    layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    bytes_per_param: float = Field(gt=0)
    bytes_per_kv: float = Field(gt=0, description="bytes per KV-cache element")
    max_context: int = Field(ge=1)
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def params(self) -> float:
        return self.params_b * 1e9

    @property
    def weight_bytes(self) -> float:
        return self.params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_kv

    @property
    def attention_flops_per_context_token(self) -> float:
        """FLOPs one new token spends attending to one earlier token (QK and AV)."""
        return 4 * self.layers * self.hidden_size
