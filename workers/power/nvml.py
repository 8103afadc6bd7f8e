"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, ``import pynvml``).

Energy comes from ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since
the driver loaded, Volta and newer) when every device supports it; otherwise
from ``nvmlDeviceGetPowerUsage`` (milliwatts) samples, integrated. Power is
always ``nvmlDeviceGetPowerUsage``. Several devices are summed.

Devices are NVML indices or ``GPU-...`` UUIDs, from the ``devices`` option or
else ``CUDA_VISIBLE_DEVICES``. CUDA numbers devices fastest-first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML always in PCI order: give UUIDs, or set
that variable, when the two could differ.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from workers.errors import EngineStartError
from workers.power.base import Clock, SampledPowerMeter


class NvmlMeter(SampledPowerMeter):
    source = "nvml"

    def __init__(self, devices: Sequence[int | str] | None = None, *, clock: Clock = time.monotonic):
        super().__init__(clock)
        try:
            import pynvml
        except ImportError as exc:
            raise EngineStartError(
                "power source 'nvml' needs the nvidia-ml-py package (import pynvml)"
            ) from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise EngineStartError(f"NVML did not initialise (is the NVIDIA driver loaded?): {exc}") from exc
        self._devices = list(devices) if devices is not None else _visible_devices(pynvml)
        if not self._devices:
            raise EngineStartError("power source 'nvml': no GPU is visible (CUDA_VISIBLE_DEVICES is empty)")
        self._handles = [self._handle(device) for device in self._devices]
        self._base_mj = self._counter_mj()
        self.watts()

    def _handle(self, device: int | str):
        nvml = self._nvml
        try:
            if isinstance(device, str) and device.startswith("GPU-"):
                return nvml.nvmlDeviceGetHandleByUUID(device)
            return nvml.nvmlDeviceGetHandleByIndex(int(device))
        except (nvml.NVMLError, ValueError) as exc:
            raise EngineStartError(f"power source 'nvml': no GPU {device!r}: {exc}") from exc

    def _counter_mj(self) -> int | None:
        """Summed energy counters in mJ, or None if any device lacks one."""
        try:
            return self._read_counter_mj()
        except self._nvml.NVMLError:
            return None

    def _read_counter_mj(self) -> int:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles)

    def _read_watts(self) -> float:
        return sum(self._nvml.nvmlDeviceGetPowerUsage(h) for h in self._handles) / 1000.0

    def energy_joules(self) -> float:
        if self._base_mj is None:
            return super().energy_joules()
        return (self._read_counter_mj() - self._base_mj) / 1000.0

    def describe(self) -> dict:
        counter = self._base_mj is not None
        return {
            "source": self.source,
            "devices": self._devices,
            "provenance": "measured",
            "method": "energy counter" if counter else "power samples, trapezoid rule",
        }

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _visible_devices(nvml) -> list[int | str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(nvml.nvmlDeviceGetCount()))
    return [int(d) if d.strip().isdigit() else d.strip() for d in visible.split(",") if d.strip()]
