"""FuriosaAI NPUs (RNGD) through furiosa-smi's Python binding.

The binding is the ``furiosa-smi-py`` package, imported as ``furiosa_smi_py``:
``init()`` (newer releases), ``list_devices()``, and per device
``device_info().index()`` and ``power_consumption()``, the card's RMS power
in watts (``rms_total`` of ``furiosa_smi_get_device_power_consumption`` in the
C API). It reports power only, so energy is integrated from samples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from workers.errors import EngineStartError
from workers.power.base import Clock, SampledPowerMeter


class FuriosaSmiMeter(SampledPowerMeter):
    source = "furiosa-smi"

    def __init__(self, devices: Sequence[int] | None = None, *, clock: Clock = time.monotonic):
        super().__init__(clock)
        try:
            import furiosa_smi_py as smi
        except ImportError as exc:
            raise EngineStartError(
                "power source 'furiosa-smi' needs the furiosa-smi-py package (import furiosa_smi_py)"
            ) from exc
        try:
            if hasattr(smi, "init"):  # required since 2025.x, absent before
                smi.init()
            found = {d.device_info().index(): d for d in smi.list_devices()}
        except Exception as exc:
            raise EngineStartError(f"furiosa-smi could not list devices (driver loaded?): {exc}") from exc
        self._devices = list(devices) if devices is not None else sorted(found)
        missing = [d for d in self._devices if d not in found]
        if missing or not self._devices:
            raise EngineStartError(
                f"power source 'furiosa-smi': NPU(s) {missing or 'any'} not found; present: {sorted(found)}"
            )
        self._handles = [found[d] for d in self._devices]
        self.watts()

    def _read_watts(self) -> float:
        return float(sum(d.power_consumption() for d in self._handles))

    def describe(self) -> dict:
        return {
            "source": self.source,
            "devices": self._devices,
            "provenance": "measured",
            "method": "power samples, trapezoid rule",
        }
