"""Pick and build the power meter a pool spec names, wired to its engine."""

from __future__ import annotations

import time

from workers.engine import EngineAdapter
from workers.hardware import HardwareModel
from workers.power import PowerMeter, make_power_meter
from workers.spec import PoolSpec


def build_meter(spec: PoolSpec, engine: EngineAdapter, hardware: HardwareModel, capacity: int) -> PowerMeter:
    """``modelled`` reads the emulated engine's own energy model; for a real
    engine on a CPU, measured CPU time (:class:`CpuTimeEnergy`); for other real
    engines, idle/peak power scaled by busy sequences / capacity. Every other
    source is a measuring meter from ``workers.power``."""
    if spec.power.source != "modelled":
        return make_power_meter(spec.power.source, **spec.power.options)
    if hasattr(engine, "energy_joules") and hasattr(engine, "power_watts"):
        return make_power_meter(
            "modelled",
            energy=lambda: engine.energy_joules().total_j,
            power=engine.power_watts,
        )

    if hardware.kind == "cpu":
        busy = CpuTimeEnergy(hardware.idle_watts_replica, hardware.peak_watts_replica)
        return make_power_meter("modelled", energy=busy.energy_joules, power=busy.watts)

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


class CpuTimeEnergy:
    """CPU power modelled from measured CPU time, for hosts without RAPL.

    ``E = idle_W · wall + (peak_W - idle_W) · cpu_seconds / cores``, where
    ``cpu_seconds`` is what this replica and its children (vLLM's EngineCore
    and workers) used. A measured input, a modelled conversion to joules.
    """

    #: Readings are reused for this long: each costs a /proc walk (about 2 ms here).
    HOLD_S = 0.1
    #: The replica's child processes (vLLM's EngineCore and workers) are re-listed this often.
    CHILDREN_EVERY_S = 5.0

    def __init__(self, idle_watts: float, peak_watts: float, clock=time.monotonic):
        import psutil

        self._proc = psutil.Process()
        self._cores = psutil.cpu_count() or 1
        self._idle, self._dynamic = idle_watts, peak_watts - idle_watts
        self._clock = clock
        self._t0 = clock()
        self._children: list = []
        self._children_at = -float("inf")
        self._reading = (-float("inf"), 0.0)
        self._cpu0 = self._cpu_seconds(self._t0)
        self._last = (self._t0, 0.0)

    def _cpu_seconds(self, now: float) -> float:
        if now - self._children_at >= self.CHILDREN_EVERY_S:
            self._children = self._proc.children(recursive=True)
            self._children_at = now
        total = 0.0
        for p in (self._proc, *self._children):
            try:
                t = p.cpu_times()
            except Exception:  # a child that exited
                continue
            total += t.user + t.system
        return total

    def energy_joules(self) -> float:
        now = self._clock()
        at, energy = self._reading
        if now - at < self.HOLD_S:
            return energy
        busy = max(0.0, self._cpu_seconds(now) - self._cpu0)
        energy = self._idle * (now - self._t0) + self._dynamic * busy / self._cores
        self._reading = (now, energy)
        return energy

    def watts(self) -> float:
        now, energy = self._clock(), self.energy_joules()
        t, e = self._last
        self._last = (now, energy)
        return (energy - e) / (now - t) if now > t else self._idle
