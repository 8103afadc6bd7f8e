"""CPU packages through Linux powercap RAPL (``intel-rapl:N`` zones).

Each zone has ``energy_uj``, a microjoule counter that wraps to zero past
``max_energy_range_uj``; a read that comes back lower than the previous one is
taken to have wrapped once, so read more often than one wrap period (minutes
at full load). By default every top-level ``package-*`` zone is summed; the
``psys`` zone overlaps the packages and is left out. ``energy_uj`` is readable
by root only on kernels with the CVE-2020-8694 fix.

``watts()`` is the mean power since the previous ``watts()`` call (since the
meter started, the first time).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from workers.errors import EngineStartError
from workers.power.base import Clock, PowerMeter

_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


class _Zone:
    """One counter, unwrapped into a monotonic total of microjoules."""

    def __init__(self, path: Path):
        self.path = path
        self.range_uj = int((path / "max_energy_range_uj").read_text())
        self.last_uj = self._raw()
        self.total_uj = 0

    def _raw(self) -> int:
        return int((self.path / "energy_uj").read_text())

    def read(self) -> int:
        raw = self._raw()
        delta = raw - self.last_uj
        if delta < 0:
            delta += self.range_uj
        self.last_uj = raw
        self.total_uj += delta
        return self.total_uj


class RaplMeter(PowerMeter):
    source = "rapl"

    def __init__(
        self,
        devices: Sequence[int | str] | None = None,
        *,
        root: str | Path = "/sys/class/powercap",
        clock: Clock = time.monotonic,
    ):
        root = Path(root)
        names = None if devices is None else [f"intel-rapl:{d}" if isinstance(d, int) else d for d in devices]
        try:
            if names is None:
                names = sorted(p.name for p in root.iterdir() if _TOP_ZONE.match(p.name) and _is_package(p))
            self._zones = [_Zone(root / n) for n in names]
        except PermissionError as exc:
            raise EngineStartError(
                f"power source 'rapl': {exc.filename} is readable by root only; "
                "run as root or grant read access"
            ) from exc
        except (OSError, ValueError) as exc:
            raise EngineStartError(f"power source 'rapl': RAPL zone unreadable under {root}: {exc}") from exc
        if not self._zones:
            raise EngineStartError(f"power source 'rapl': no RAPL package zone under {root}")
        self._names = names
        self._clock = clock
        self._last = (clock(), 0.0)  # (time, joules) at the previous watts()
        self._last_watts = 0.0

    def energy_joules(self) -> float:
        return sum(z.read() for z in self._zones) / 1e6

    def watts(self) -> float:
        now, joules = self._clock(), self.energy_joules()
        then, before = self._last
        if now > then:
            self._last_watts = (joules - before) / (now - then)
            self._last = (now, joules)
        return self._last_watts

    def describe(self) -> dict:
        return {
            "source": self.source,
            "devices": self._names,
            "provenance": "measured",
            "method": "energy counter",
        }


def _is_package(zone: Path) -> bool:
    return (zone / "name").read_text().strip().startswith("package")
