"""The last finished requests, for the dashboard: a bounded ring in memory.

Appending is O(1) and does no I/O, so it may sit on the request path;
readers ask for what came ``after`` the last sequence number they saw.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from pydantic import BaseModel

from routing.predictor import Prediction


class RecentRequest(BaseModel):
    """One finished request as ``GET /v1/requests/recent`` lists it."""

    seq: int  # increasing; a reader passes the last one it saw as ``after``
    finished: float  # Unix time
    model: str
    pool: str
    route_reason: str
    prompt_tokens: int
    output_tokens: int
    ttft_ms: float
    e2e_ms: float
    energy_j: float  # attributed (above the pool's idle draw)
    # the router's forecast for the chosen pool when it sent the request (None: the policy made none)
    predicted_ttft_ms: float | None = None
    predicted_tpot_ms: float | None = None


class RecentRequests:
    def __init__(self, size: int = 256, clock: Callable[[], float] = time.time):
        self._ring: deque[RecentRequest] = deque(maxlen=size)
        self._seq = 0
        self._clock = clock

    def add(
        self, model: str, pool: str, route_reason: str, prompt_tokens: int, output_tokens: int,
        ttft_s: float, e2e_s: float, energy_j: float, prediction: Prediction | None = None,
    ) -> None:
        self._seq += 1
        self._ring.append(RecentRequest(
            seq=self._seq, finished=self._clock(), model=model, pool=pool, route_reason=route_reason,
            prompt_tokens=prompt_tokens, output_tokens=output_tokens, ttft_ms=ttft_s * 1e3, e2e_ms=e2e_s * 1e3,
            energy_j=energy_j, predicted_ttft_ms=prediction.ttft_ms if prediction is not None else None,
            predicted_tpot_ms=prediction.tpot_ms if prediction is not None else None,
        ))

    @property
    def last_seq(self) -> int:
        return self._seq

    def after(self, seq: int = 0, limit: int | None = None) -> list[RecentRequest]:
        """Requests newer than ``seq``, oldest first; at most ``limit`` of the newest."""
        out = [r for r in self._ring if r.seq > seq]
        return out[-limit:] if limit else out
