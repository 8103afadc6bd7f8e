"""Power meters: one per pool replica, named in pool config.

``power: {source: nvml, devices: [0]}`` becomes
``make_power_meter("nvml", devices=[0])``. Hardware libraries are imported
when a meter is built, never when this package is imported.
"""

from __future__ import annotations

import inspect

from workers.errors import EngineStartError
from workers.power.base import PowerMeter, SampledPowerMeter, TrapezoidIntegrator
from workers.power.furiosa import FuriosaSmiMeter
from workers.power.modelled import ModelledMeter
from workers.power.nvml import NvmlMeter
from workers.power.rapl import RaplMeter
from workers.power.rbln import RblnSmiMeter

SOURCES: dict[str, type[PowerMeter]] = {
    "nvml": NvmlMeter,
    "furiosa-smi": FuriosaSmiMeter,
    "rbln-smi": RblnSmiMeter,
    "rapl": RaplMeter,
    "modelled": ModelledMeter,
}


def make_power_meter(source: str, **options) -> PowerMeter:
    """Build the meter for ``source``; raise EngineStartError for a bad source, option or device."""
    try:
        meter = SOURCES[source]
    except KeyError:
        raise EngineStartError(
            f"unknown power source {source!r}; valid sources: {', '.join(SOURCES)}", param="power.source"
        ) from None
    try:
        inspect.signature(meter).bind(**options)
    except TypeError as exc:
        raise EngineStartError(f"power source {source!r}: {exc}", param="power") from None
    return meter(**options)


__all__ = [
    "SOURCES",
    "FuriosaSmiMeter",
    "ModelledMeter",
    "NvmlMeter",
    "PowerMeter",
    "RaplMeter",
    "RblnSmiMeter",
    "SampledPowerMeter",
    "TrapezoidIntegrator",
    "make_power_meter",
]
