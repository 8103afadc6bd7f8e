"""Seeded synthetic workloads: arrival times and request lengths.

Arrival processes produce unit-rate gaps (mean 1): constant gaps of 1,
Poisson gaps ``Exp(1)``, or gamma gaps with coefficient of variation
``burstiness`` (1 is Poisson, above 1 is burstier, below 1 smoother). Their
running sum is "operational time" ``u``; the ``k``-th arrival happens when the
cumulative offered load ``Λ(t)`` reaches ``u_k``. A fixed rate gives
``t = u / rate``; a linear ramp from ``rate`` to ``rate_end`` over ``span``
seconds solves the quadratic. So every process works at any rate profile.

Length profiles are log-normal, clipped (medians in tokens):

========== ============== ==============
profile    prompt         output
========== ============== ==============
chat       256 (16-2048)  256 (16-1024)
long-doc   4096 (1k-16k)  128 (16-512)
mixed      80 % chat, 20 % long-doc
========== ============== ==============
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fleet.trace import TraceRecord

Arrival = Literal["constant", "poisson", "gamma"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson", "gamma")


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Token counts with the given median and log-space sigma, clipped to [low, high]."""

    median: float
    sigma: float
    low: int
    high: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        values = rng.lognormal(math.log(self.median), self.sigma, size=n)
        return np.clip(np.rint(values), self.low, self.high).astype(int)


_CHAT = (LogNormal(256, 0.8, 16, 2048), LogNormal(256, 0.6, 16, 1024))
_LONG_DOC = (LogNormal(4096, 0.5, 1024, 16384), LogNormal(128, 0.5, 16, 512))
LENGTH_PROFILES: tuple[str, ...] = ("chat", "long-doc", "mixed")
_MIXED_LONG_SHARE = 0.2


def unit_gaps(n: int, arrival: Arrival, rng: np.random.Generator, burstiness: float = 1.0) -> np.ndarray:
    """``n`` inter-arrival gaps with mean 1."""
    if arrival == "constant":
        return np.ones(n)
    if arrival == "poisson":
        return rng.exponential(1.0, size=n)
    if arrival == "gamma":
        if burstiness <= 0:
            raise ValueError("burstiness (coefficient of variation) must be > 0")
        shape = 1.0 / burstiness**2
        return rng.gamma(shape, 1.0 / shape, size=n)
    raise ValueError(f"unknown arrival process {arrival!r}; expected one of {ARRIVALS}")


def arrival_times(
    u: np.ndarray, rate: float, rate_end: float | None = None, span: float | None = None
) -> np.ndarray:
    """Map operational times ``u`` to seconds under a fixed rate or a linear ramp.

    With ``rate_end`` the rate goes linearly from ``rate`` to ``rate_end`` over
    ``span`` seconds and stays at ``rate_end`` after.
    """
    if rate <= 0 or (rate_end is not None and rate_end <= 0):
        raise ValueError("rates must be > 0")
    if rate_end is None or rate_end == rate:
        return u / rate
    if not span or span <= 0:
        raise ValueError("a ramp needs a positive span")
    slope = (rate_end - rate) / span
    ramp_load = rate * span + slope * span**2 / 2  # Λ(span)
    in_ramp = (-rate + np.sqrt(np.maximum(rate**2 + 2 * slope * u, 0.0))) / slope
    after = span + (u - ramp_load) / rate_end
    return np.where(u <= ramp_load, in_ramp, after)


def sample_lengths(
    profile: str,
    n: int,
    rng: np.random.Generator,
    prompt_tokens: int | None = None,
    output_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths for ``n`` requests; a given fixed length overrides its side."""
    if profile == "chat":
        prompts, outputs = (d.sample(rng, n) for d in _CHAT)
    elif profile == "long-doc":
        prompts, outputs = (d.sample(rng, n) for d in _LONG_DOC)
    elif profile == "mixed":
        long = rng.random(n) < _MIXED_LONG_SHARE
        chat_p, chat_o = (d.sample(rng, n) for d in _CHAT)
        doc_p, doc_o = (d.sample(rng, n) for d in _LONG_DOC)
        prompts, outputs = np.where(long, doc_p, chat_p), np.where(long, doc_o, chat_o)
    else:
        raise ValueError(f"unknown length profile {profile!r}; expected one of {LENGTH_PROFILES}")
    if prompt_tokens is not None:
        prompts = np.full(n, prompt_tokens)
    if output_tokens is not None:
        outputs = np.full(n, output_tokens)
    return prompts, outputs


def generate_trace(
    *,
    model: str,
    rate: float,
    n: int | None = None,
    duration: float | None = None,
    arrival: Arrival = "poisson",
    burstiness: float = 1.0,
    rate_end: float | None = None,
    lengths: str = "chat",
    prompt_tokens: int | None = None,
    output_tokens: int | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    seed: int = 0,
) -> list[TraceRecord]:
    """A seeded synthetic trace: ``n`` requests, every arrival before ``duration``, or both.

    The first request arrives at t=0. ``rate_end`` ramps the rate linearly
    over ``duration`` (which it then requires).
    """
    if n is None and duration is None:
        raise ValueError("give n, duration or both")
    if n is not None and n < 1:
        raise ValueError("n must be >= 1")
    if rate_end is not None and duration is None:
        raise ValueError("a ramp needs a duration")
    rng = np.random.default_rng(seed)
    count = n if n is not None else _enough_arrivals(rate, rate_end, duration, burstiness)
    gaps = unit_gaps(count, arrival, rng, burstiness)
    u = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    times = arrival_times(u, rate, rate_end, duration)
    if duration is not None:
        times = times[times < duration]
    prompts, outputs = sample_lengths(lengths, len(times), rng, prompt_tokens, output_tokens)
    return [
        TraceRecord(
            t=round(float(t), 6),
            model=model,
            prompt_tokens=int(p),
            output_tokens=int(o),
            slo_ttft_ms=slo_ttft_ms,
            slo_tpot_ms=slo_tpot_ms,
        )
        for t, p, o in zip(times, prompts, outputs)
    ]


def _enough_arrivals(rate: float, rate_end: float | None, duration: float, burstiness: float) -> int:
    """More arrivals than fit in ``duration``: the mean plus ten standard deviations."""
    mean = max(rate, rate_end or rate) * duration
    return int(mean + 10 * max(burstiness, 1.0) * math.sqrt(mean) + 100)
