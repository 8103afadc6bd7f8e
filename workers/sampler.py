"""Power metering off the request path: one background sampler per replica.

Meter reads can block (``rbln-smi`` runs a process, the CPU meter walks
``/proc``, NVML takes a driver call), and a replica's event loop relays
tokens. So a daemon thread reads the meter at a fixed rate and keeps the
latest sample; everything on the request path (the energy ledger, the
counters sent with every finished request) reads that sample, extrapolated
by the last power reading to the moment asked, which costs no I/O.

The meter itself is read from the sampler's thread only, which keeps the
one-thread rule of ``workers.power.base``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from workers.power import PowerMeter

#: Samples per second: fine enough for per-request attribution of requests
#: lasting tens of milliseconds, cheap enough for a 2 ms read.
DEFAULT_RATE_HZ = 10.0


class BackgroundSampledMeter(PowerMeter):
    """A ``PowerMeter`` whose reads return the latest background sample.

    ``energy_joules()`` is the sampled counter plus the last power reading
    times the time since, never below a value it returned before (so the
    ledger's differences stay non-negative when a sample lands below the
    extrapolation).
    """

    def __init__(self, meter: PowerMeter, rate_hz: float = DEFAULT_RATE_HZ,
                 clock: Callable[[], float] = time.monotonic):
        self.inner = meter
        self.source = meter.source
        self.interval_s = 1.0 / rate_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._describe = meter.describe()
        self._sample = (clock(), meter.energy_joules(), meter.watts())  # proves the meter answers
        self._floor = self._sample[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0  # failed background reads (the last good sample stays)

    def start(self) -> "BackgroundSampledMeter":
        self._thread = threading.Thread(target=self._run, name=f"meter-{self.source}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        """One read of the meter (the thread's loop; tests call it directly)."""
        try:
            energy, watts = self.inner.energy_joules(), self.inner.watts()
        except Exception:  # a device hiccup must not kill metering; the count says it happened
            self.errors += 1
            return
        with self._lock:
            self._sample = (self._clock(), energy, watts)

    def watts(self) -> float:
        return self._sample[2]

    def energy_joules(self) -> float:
        with self._lock:
            at, energy, watts = self._sample
            value = max(self._floor, energy + watts * max(0.0, self._clock() - at))
            self._floor = value
        return value

    def describe(self) -> dict:
        return {**self._describe, "sampled_hz": round(1.0 / self.interval_s, 3)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s + 1.0)
        self.inner.close()
