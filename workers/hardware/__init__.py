"""Hardware model: chip and model descriptions, the catalog, and the roofline."""

from workers.hardware.catalog import (
    CatalogError,
    get_hardware,
    get_model,
    hardware_keys,
    model_keys,
    resolve_hardware,
    resolve_model,
)
from workers.hardware.model import HardwareModel, ModelSpec
from workers.hardware.roofline import (
    StepCost,
    combine,
    decode_cost,
    is_feasible,
    kv_capacity_tokens,
    max_sequence_tokens,
    padded_batch,
    padded_seq,
    power_watts,
    prefill_cost,
)

__all__ = [
    "CatalogError",
    "HardwareModel",
    "ModelSpec",
    "StepCost",
    "combine",
    "decode_cost",
    "get_hardware",
    "get_model",
    "hardware_keys",
    "is_feasible",
    "kv_capacity_tokens",
    "max_sequence_tokens",
    "model_keys",
    "padded_batch",
    "padded_seq",
    "power_watts",
    "prefill_cost",
    "resolve_hardware",
    "resolve_model",
]
