"""Modelled power: no measurement, and says so (``provenance: modelled``).

Built in one of two forms:

* ``energy`` and ``power`` callables, e.g. the emulated engine's
  ``energy_joules()`` (cumulative) and ``power_watts()``; energy is counted
  from the meter's start.
* ``idle_watts``, ``peak_watts`` and a ``utilisation`` callable (0..1):
  power is ``idle + (peak - idle) * utilisation``, integrated on every read
  by the trapezoid rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.errors import EngineStartError
from workers.power.base import Clock, SampledPowerMeter

Reading = Callable[[], float]


class ModelledMeter(SampledPowerMeter):
    source = "modelled"

    def __init__(
        self,
        *,
        energy: Reading | None = None,
        power: Reading | None = None,
        idle_watts: float | None = None,
        peak_watts: float | None = None,
        utilisation: Reading | None = None,
        clock: Clock = time.monotonic,
    ):
        super().__init__(clock)
        engine_form = (energy, power)
        load_form = (idle_watts, peak_watts, utilisation)
        if None not in engine_form and load_form == (None, None, None):
            self._energy, self._power = energy, power
            self._base = energy()
        elif None not in load_form and engine_form == (None, None):
            if not 0 <= idle_watts <= peak_watts:
                raise EngineStartError(
                    f"modelled power needs 0 <= idle_watts <= peak_watts, got {idle_watts}, {peak_watts}"
                )
            self._energy = None
            self._idle, self._peak, self._utilisation = idle_watts, peak_watts, utilisation
        else:
            raise EngineStartError(
                "modelled power takes either energy= and power=, or idle_watts=, peak_watts= and utilisation="
            )
        self.watts()

    def _read_watts(self) -> float:
        if self._energy is not None:
            return self._power()
        busy = min(max(self._utilisation(), 0.0), 1.0)
        return self._idle + (self._peak - self._idle) * busy

    def energy_joules(self) -> float:
        if self._energy is not None:
            return self._energy() - self._base
        return super().energy_joules()

    def describe(self) -> dict:
        method = "engine model" if self._energy is not None else "idle/peak by utilisation, trapezoid rule"
        return {"source": self.source, "devices": [], "provenance": "modelled", "method": method}
