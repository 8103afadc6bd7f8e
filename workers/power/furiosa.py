"""FuriosaAI NPUs (RNGD) through furiosa-smi's Python binding.

Two bindings exist, both on the package registry:

* ``furiosa-smi`` (2026.4+, imported as ``furiosa_smi``), the one furiosa-llm
  2026.4 requires: ``list_devices()`` needs no ``init()``; a device names
  itself ``device_name()`` -> ``"npu3"`` (furiosa-llm reads the index from it
  the same way); ``power_consumption()`` is the hwmon reading in watts (the
  binding divides the sysfs microwatts by 10^6).
* ``furiosa-smi-py`` (up to 2026.1, imported as ``furiosa_smi_py``):
  ``init()`` first, then ``list_devices()``, ``device_info().index()`` and
  ``power_consumption()`` in watts (``rms_total`` of the C API's
  ``furiosa_smi_get_device_power_consumption``).

The first one installed is used. Both report power only, so energy is
integrated from samples. tests/contracts checks both against the real packages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from workers.errors import EngineStartError
from workers.power.base import Clock, SampledPowerMeter


class FuriosaSmiMeter(SampledPowerMeter):
    source = "furiosa-smi"

    def __init__(self, devices: Sequence[int] | None = None, *, clock: Clock = time.monotonic):
        super().__init__(clock)
        list_devices = _binding_list_devices()
        try:
            found = {_index(d): d for d in list_devices()}
        except Exception as exc:
            raise EngineStartError(f"furiosa-smi could not list devices (driver loaded?): {exc}") from exc
        self._devices = list(devices) if devices is not None else sorted(found)
        if not self._devices:
            raise EngineStartError("power source 'furiosa-smi': no NPU found (is the driver loaded?)")
        missing = [d for d in self._devices if d not in found]
        if missing:
            raise EngineStartError(f"power source 'furiosa-smi': NPU(s) {missing} not found; present: {sorted(found)}")
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


def _binding_list_devices() -> Callable[[], list]:
    """``list_devices`` of the installed binding, ``furiosa_smi`` first."""
    try:
        import furiosa_smi

        return furiosa_smi.list_devices
    except ImportError:
        pass
    try:
        import furiosa_smi_py
    except ImportError as exc:
        raise EngineStartError(
            "power source 'furiosa-smi' needs the furiosa-smi package (import furiosa_smi), "
            "or the older furiosa-smi-py (import furiosa_smi_py)"
        ) from exc

    def list_devices() -> list:
        furiosa_smi_py.init()  # this binding answers nothing before it
        return furiosa_smi_py.list_devices()

    return list_devices


def _index(device) -> int:
    if hasattr(device, "device_info"):  # furiosa_smi_py
        return device.device_info().index()
    return int(device.device_name().removeprefix("npu"))  # furiosa_smi: "npu3"
