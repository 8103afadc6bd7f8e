"""The load tester's own lag, and whether a run was client-bound.

Every time the client stamps (a send, a chunk's arrival) is late by however
long its event loop was busy elsewhere. A probe task asks the loop to wake
it every :data:`PROBE_INTERVAL_S` and records how late it woke: that
lateness is the error on any stamp taken at that moment. A run is
*client-bound* when the probe's p90 lateness, or the open-loop dispatch lag
p90, exceeds :data:`CLIENT_BOUND_SHARE` of the smallest median it measured
(TTFT or ITL): then its latencies carry the client's lag, by the share it
reports.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

PROBE_INTERVAL_S = 0.005
CLIENT_BOUND_SHARE = 0.05  # as the 5 % agreement target between load tools


class LoopLagProbe:
    """``async with LoopLagProbe() as probe: ...``; then ``probe.lags_s``."""

    def __init__(self, interval_s: float = PROBE_INTERVAL_S):
        self.interval_s = interval_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.lags_s.append(max(0.0, time.perf_counter() - due))

    async def __aenter__(self) -> "LoopLagProbe":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class ClientLag(BaseModel):
    """The verdict on one run's client lag (milliseconds)."""

    loop_lag_p90_ms: float | None
    dispatch_lag_p90_ms: float | None
    measured: str | None  # the smallest median the run measured: "TTFT p50" or "ITL p50"
    measured_ms: float | None
    share: float | None  # the larger lag p90 over measured_ms
    client_bound: bool

    def describe(self) -> str:
        if self.share is None:
            return "not judged (no latencies measured)"
        verdict = "CLIENT-BOUND" if self.client_bound else "ok"
        return (f"{verdict}: client lag p90 is {self.share:.1%} of {self.measured} "
                f"({_ms(max_lag(self))} of {_ms(self.measured_ms)} ms; limit {CLIENT_BOUND_SHARE:.0%})")


def judge(loop_lag_p90_ms: float | None, dispatch_lag_p90_ms: float | None,
          ttft_p50_ms: float | None, itl_p50_ms: float | None) -> ClientLag:
    """Compare the client's lag with the smallest latency it measured."""
    measured = [(v, name) for v, name in ((ttft_p50_ms, "TTFT p50"), (itl_p50_ms, "ITL p50")) if v]
    lags = [v for v in (loop_lag_p90_ms, dispatch_lag_p90_ms) if v is not None]
    if not measured or not lags:
        return ClientLag(loop_lag_p90_ms=loop_lag_p90_ms, dispatch_lag_p90_ms=dispatch_lag_p90_ms,
                         measured=None, measured_ms=None, share=None, client_bound=False)
    value, name = min(measured)
    share = max(lags) / value
    return ClientLag(loop_lag_p90_ms=loop_lag_p90_ms, dispatch_lag_p90_ms=dispatch_lag_p90_ms, measured=name,
                     measured_ms=value, share=share, client_bound=share > CLIENT_BOUND_SHARE)


def max_lag(c: ClientLag) -> float:
    return max(v for v in (c.loop_lag_p90_ms, c.dispatch_lag_p90_ms) if v is not None)


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"
