"""Pick and build the power meter a pool spec names, wired to its engine."""

from __future__ import annotations

from workers.engine import EngineAdapter
from workers.hardware import HardwareModel
from workers.power import PowerMeter, make_power_meter
from workers.spec import PoolSpec


def build_meter(spec: PoolSpec, engine: EngineAdapter, hardware: HardwareModel, capacity: int) -> PowerMeter:
    """``modelled`` reads the emulated engine's own energy model, or for a real
    engine the hardware's idle/peak power scaled by busy sequences / capacity;
    every other source is a measuring meter from ``workers.power``."""
    if spec.power.source != "modelled":
        return make_power_meter(spec.power.source, **spec.power.options)
    if hasattr(engine, "energy_joules") and hasattr(engine, "power_watts"):
        return make_power_meter(
            "modelled",
            energy=lambda: engine.energy_joules().total_j,
            power=engine.power_watts,
        )

    def utilisation() -> float:
        s = engine.stats()
        return min(1.0, (s.running + s.waiting) / max(capacity, 1))

    return make_power_meter(
        "modelled",
        idle_watts=hardware.idle_watts_replica,
        peak_watts=hardware.peak_watts_replica,
        utilisation=utilisation,
        **spec.power.options,
    )
