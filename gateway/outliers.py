"""Pool ejection after failures, and the budget that bounds retries.

Outlier detection as Envoy does it: a pool whose request failed (a 5xx, a
dead replica) is ejected for ``base × n`` seconds, where ``n`` counts its
ejections in a row, capped at ``max``; a success after the ejection ends
resets ``n``. Retries are allowed while they stay under ``ratio`` of the
requests seen in a sliding window (plus ``minimum`` per window), so a fleet
in trouble sees at most ``1 + ratio`` times its load, not ``max_attempts``
times.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Ejection:
    until: float = 0.0  # clock time the ejection ends
    times: int = 0  # ejections in a row
    reason: str | None = None
    total: int = 0  # ejections ever


class OutlierDetector:
    def __init__(self, base_s: float, max_s: float, clock: Callable[[], float] = time.monotonic):
        self.base_s, self.max_s, self.clock = base_s, max_s, clock
        self._pools: dict[str, Ejection] = {}

    def _get(self, pool: str) -> Ejection:
        return self._pools.setdefault(pool, Ejection())

    def failure(self, pool: str, reason: str) -> bool:
        """Eject ``pool`` (longer when it was ejected just before); False if it already is."""
        e = self._get(pool)
        now = self.clock()
        if now < e.until:
            return False  # requests in flight when it was ejected report late: one ejection
        e.times += 1
        e.total += 1
        e.until = now + min(self.base_s * e.times, self.max_s)
        e.reason = reason
        return True

    def success(self, pool: str) -> None:
        e = self._pools.get(pool)
        if e is not None and e.times and self.clock() >= e.until:
            e.times, e.reason = 0, None

    def ejected(self, pool: str) -> bool:
        e = self._pools.get(pool)
        return e is not None and self.clock() < e.until

    def describe(self, pool: str) -> dict:
        """``ejected_for_s`` (0 when not ejected), ``ejected_until`` (Unix time), ``ejection_reason``, ``ejections``."""
        e = self._pools.get(pool, Ejection())
        left = max(0.0, e.until - self.clock())
        return {
            "ejected_for_s": round(left, 3),
            "ejected_until": round(time.time() + left, 3) if left else None,
            "ejection_reason": e.reason if left else None,
            "ejections": e.total,
        }


class RetryBudget:
    def __init__(self, ratio: float, minimum: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.ratio, self.minimum, self.window_s, self.clock = ratio, minimum, window_s, clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def _trim(self, now: float) -> None:
        for q in (self._requests, self._retries):
            while q and q[0] <= now - self.window_s:
                q.popleft()

    def request(self) -> None:
        self._requests.append(self.clock())

    def try_retry(self) -> bool:
        """Spend one retry if the budget allows it."""
        now = self.clock()
        self._trim(now)
        if len(self._retries) >= max(self.minimum, self.ratio * len(self._requests)):
            return False
        self._retries.append(now)
        return True
