"""Energy accounting inside one replica: per request and cumulative.

A replica's meter counts all its energy. What a request *caused* is the
energy above the chip's idle draw while it ran, shared among the tokens made
in that time: ``attributed = (ΔE - idle_W·Δt) · my_tokens / Δtokens``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.power import PowerMeter


@dataclass(frozen=True, slots=True)
class Mark:
    t: float
    energy_j: float
    tokens: int


class EnergyLedger:
    def __init__(self, meter: PowerMeter, idle_watts: float, clock: Callable[[], float] = time.monotonic):
        self.meter = meter
        self.idle_watts = idle_watts
        self._clock = clock
        self._start = clock()

    def mark(self, tokens_total: int) -> Mark:
        return Mark(self._clock(), self.meter.energy_joules(), tokens_total)

    def attribute(self, since: Mark, my_tokens: int, tokens_total: int) -> float:
        now = self.mark(tokens_total)
        above_idle = max(0.0, (now.energy_j - since.energy_j) - self.idle_watts * (now.t - since.t))
        made = max(now.tokens - since.tokens, my_tokens, 1)
        return above_idle * my_tokens / made

    def totals(self) -> tuple[float, float]:
        """(total joules, joules above idle) since the replica started."""
        total = self.meter.energy_joules()
        return total, max(0.0, total - self.idle_watts * (self._clock() - self._start))
