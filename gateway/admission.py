"""The gateway's own admission: a bounded number of requests at once, 429 beyond it.

Pools bound their queues through routing (``spillover.saturation`` × capacity);
this bounds the gateway as a whole, so 10× the load a fleet can serve becomes
429s with a ``Retry-After`` rather than an ever longer queue in Serve's proxy.
The wait a client is told is predicted from how fast requests have been
finishing: the requests over the limit, divided by completions per second
over the last ``window_s``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from gateway import errors

#: Bounds of the Retry-After the gateway sends, in seconds.
MIN_RETRY_S, MAX_RETRY_S = 1, 60


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, within the bounds."""
    return str(min(MAX_RETRY_S, max(MIN_RETRY_S, math.ceil(seconds))))


class Admission:
    def __init__(self, limit: int, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._ends: deque[float] = deque()

    def ended(self) -> None:
        """A request left (finished, failed or refused): one slot freed."""
        now = self.clock()
        self._ends.append(now)
        while self._ends and self._ends[0] <= now - self.window_s:
            self._ends.popleft()

    def predicted_wait_s(self, excess: int) -> float:
        """Seconds until ``excess`` slots free up at the recent completion rate (the window, when none ended)."""
        now = self.clock()
        recent = sum(1 for t in self._ends if t > now - self.window_s)
        return excess * self.window_s / recent if recent else self.window_s

    def admit(self, active: int) -> None:
        """Raise a 429 when ``active`` requests already fill the gateway."""
        if active < self.limit:
            return
        wait = self.predicted_wait_s(active - self.limit + 1)
        raise errors.Overloaded(
            f"the gateway is at its limit of {self.limit} requests at once; retry in {wait:.1f} s",
            code="gateway_overloaded", headers={"Retry-After": retry_after(wait)},
        )
