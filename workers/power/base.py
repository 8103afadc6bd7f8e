"""The power meter contract, plus the trapezoid integrator for sampling meters.

A pool replica owns one :class:`PowerMeter`. ``energy_joules()`` is a
cumulative counter from the moment the meter was built; the gateway takes
differences of it around requests and intervals. Meters are built at pool
start and read once there, so a missing library or device raises
:class:`workers.errors.EngineStartError` then, never on a later read. Later
reads raise the underlying library's own error. Meters are not thread-safe:
read each from one thread (the replica's event loop).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

Clock = Callable[[], float]


class PowerMeter(abc.ABC):
    """Contract for one pool replica's power source."""

    #: Name used in pool config and reports: "nvml", "furiosa-smi", ...
    source: str

    @abc.abstractmethod
    def watts(self) -> float:
        """Power draw now, in watts, summed over the meter's devices."""

    @abc.abstractmethod
    def energy_joules(self) -> float:
        """Joules consumed since the meter was built (monotonic)."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """``source``, ``devices``, ``provenance`` ("measured"/"modelled"), ``method``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the library handle, if any."""


class TrapezoidIntegrator:
    """Cumulative joules from power samples, by the trapezoid rule.

    Between two consecutive samples the power is taken to change linearly, so
    the energy added is the mean of the two readings times the time between
    them. The result is only as good as the sampling rate: a spike shorter
    than the gap between reads is missed.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self._last: tuple[float, float] | None = None  # (time, watts)
        self.joules = 0.0

    def add(self, watts: float) -> float:
        now = self._clock()
        if self._last is not None:
            then, before = self._last
            self.joules += (before + watts) / 2.0 * (now - then)
        self._last = (now, watts)
        return self.joules


class SampledPowerMeter(PowerMeter):
    """A meter whose device reports power only: every read is integrated.

    Both :meth:`watts` and :meth:`energy_joules` take a fresh sample and add
    it to the integral, so energy accrues on every read of either. Subclasses
    implement :meth:`_read_watts` and call ``self.watts()`` at the end of
    ``__init__`` (the first sample starts the integral and proves the device
    answers).
    """

    def __init__(self, clock: Clock):
        self._integrator = TrapezoidIntegrator(clock)

    @abc.abstractmethod
    def _read_watts(self) -> float:
        """One power reading, in watts, summed over the devices."""

    def watts(self) -> float:
        watts = self._read_watts()
        self._integrator.add(watts)
        return watts

    def energy_joules(self) -> float:
        return self._integrator.add(self._read_watts())
