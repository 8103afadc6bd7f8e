"""Request classes of a trace and their peak demand (busiest window)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.workload import Workload

LENGTH_EDGES = (128, 512, 2048, 8192, 32768, 131072)


@dataclass(frozen=True, slots=True)
class RequestClass:
    """Requests of one (prompt bucket, output bucket, SLO) class.

    ``prompt``/``output`` are the class means (what throughput depends on);
    ``max_total`` the longest sequence (what a compiled NPU limit must hold).
    """

    key: str
    prompt: int
    output: int
    max_total: int
    slo_ttft_ms: float  # inf: no target
    slo_tpot_ms: float
    rate_rps: float  # in the busiest window


def _bucket(values: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(LENGTH_EDGES), values, side="left")


def busiest_window(t: np.ndarray, window_s: float) -> tuple[float, float]:
    """Start and end of the ``window_s`` holding the most arrivals."""
    if len(t) == 0:
        return 0.0, window_s
    ends = np.searchsorted(t, t + window_s, side="left")
    i = int(np.argmax(ends - np.arange(len(t))))
    return float(t[i]), float(t[i]) + window_s


def request_classes(w: Workload, window_s: float = 60.0) -> list[RequestClass]:
    """Classes with their arrival rate in the trace's busiest ``window_s``."""
    span = max(w.span_s, 1e-9)
    window = min(window_s, span) if span < window_s else window_s
    start, end = busiest_window(w.t, window)
    in_win = (w.t >= start) & (w.t < end)
    ttft = np.nan_to_num(w.slo_ttft_ms, nan=np.inf)
    tpot = np.nan_to_num(w.slo_tpot_ms, nan=np.inf)
    keys = np.stack([_bucket(w.prompt), _bucket(w.output)], axis=1)
    out = []
    for combo in sorted({(int(a), int(b), float(c), float(d)) for a, b, c, d in zip(keys[:, 0], keys[:, 1], ttft, tpot)}):
        m = (keys[:, 0] == combo[0]) & (keys[:, 1] == combo[1]) & (ttft == combo[2]) & (tpot == combo[3])
        rate = float(np.count_nonzero(m & in_win)) / window
        out.append(RequestClass(
            key=f"p{LENGTH_EDGES[combo[0]]}-o{LENGTH_EDGES[combo[1]]}-ttft{combo[2]:g}-tpot{combo[3]:g}",
            prompt=int(round(w.prompt[m].mean())), output=max(1, int(round(w.output[m].mean()))),
            max_total=int((w.prompt[m] + w.output[m]).max()),
            slo_ttft_ms=combo[2], slo_tpot_ms=combo[3], rate_rps=rate))
    return out
