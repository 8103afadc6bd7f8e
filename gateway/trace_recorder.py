"""Record the gateway's real traffic as a trace (``fleet.trace`` format).

Each request that completes becomes one line: its arrival time, model, prompt
tokens, output tokens per sequence, SLO targets, and how it was served
(pool, TTFT, end-to-end time, attributed energy). The file replays through
``hetserve loadtest`` and ``hetserve simulate`` as it is.

Requests finish out of order but a trace must never go back in time, so
finished records wait until every request that arrived before them has
finished (or failed); :meth:`TraceRecorder.flush` writes those, in arrival
order, off the request path (the gateway's poll loop calls it).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from pathlib import Path

from fleet.trace import Served, TraceRecord


class TraceRecorder:
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._t0 = clock()
        self._open: dict[str, float] = {}  # request id -> arrival
        self._done: list[tuple[float, str, TraceRecord]] = []  # heap by arrival

    def begin(self, request_id: str) -> None:
        self._open[request_id] = self._clock() - self._t0

    def drop(self, request_id: str) -> None:
        self._open.pop(request_id, None)

    def finish(self, request_id: str, model: str, prompt_tokens: int, output_tokens: int, pool: str,
               ttft_s: float, e2e_s: float, energy_j: float | None,
               slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None) -> None:
        t = self._open.pop(request_id, None)
        if t is None or prompt_tokens < 1 or output_tokens < 1:
            return
        record = TraceRecord(
            t=round(t, 6), model=model, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
            slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms,
            served=Served(pool=pool, ttft_ms=ttft_s * 1e3, e2e_ms=e2e_s * 1e3, energy_j=energy_j),
        )
        heapq.heappush(self._done, (t, request_id, record))

    def flush(self) -> int:
        """Append the records no unfinished request precedes; return how many."""
        watermark = min(self._open.values(), default=float("inf"))
        ready = []
        while self._done and self._done[0][0] <= watermark:
            ready.append(heapq.heappop(self._done)[2])
        if ready:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(r.model_dump_json(exclude_none=True) + "\n" for r in ready)
        return len(ready)
