"""Seeded evaluation traces: bursts, long documents and SLO classes.

A scenario is a mix of request classes (each with its own lengths and its
own TTFT/TPOT targets, carried per request as the ``x-hetserve-slo-*``
headers would carry them) and a rate profile: phases of the trace's span at
a rate relative to the mean, so a burst or a lull changes the arrival rate
mid-trace. Gaps are gamma-distributed in operational time (``burstiness`` is
their coefficient of variation, 1 is Poisson), then mapped through the
piecewise-constant rate, as ``loadtests.workloads`` maps its ramps.

The same seed gives the same requests at every ``rate``: only the arrival
times scale, so the ¼, ½ and full loads of a benchmark replay one trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleet.trace import TraceRecord
from loadtests.workloads import LogNormal, unit_gaps

#: Token lengths (prompt, output) by name; medians and clips in tokens.
LENGTHS: dict[str, tuple[LogNormal, LogNormal]] = {
    "chat": (LogNormal(256, 0.8, 16, 2048), LogNormal(256, 0.6, 16, 1024)),
    "rag": (LogNormal(2048, 0.4, 512, 6144), LogNormal(192, 0.5, 16, 512)),
    # Longer than ATOM's compiled 8,192 tokens about a third of the time.
    "document": (LogNormal(6144, 0.6, 2048, 24576), LogNormal(128, 0.5, 16, 512)),
}


@dataclass(frozen=True)
class RequestClass:
    """Requests of one kind: a share of the trace, lengths and targets."""

    name: str
    share: float
    lengths: str  # a key of LENGTHS
    slo_ttft_ms: float
    slo_tpot_ms: float


@dataclass(frozen=True)
class Phase:
    """``span`` (a share of the trace's time) at ``rate`` × the mean rate (before normalising)."""

    span: float
    rate: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    classes: tuple[RequestClass, ...]
    phases: tuple[Phase, ...] = (Phase(1.0, 1.0),)
    burstiness: float = 1.0


_INTERACTIVE = dict(slo_ttft_ms=500.0, slo_tpot_ms=40.0)
_BATCH = dict(slo_ttft_ms=10_000.0, slo_tpot_ms=150.0)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "bursty",
        "chat and RAG; a lull, a burst at 2.5× the lull's rate, a lull again; gamma gaps (CV 1.5)",
        (RequestClass("interactive", 0.7, "chat", **_INTERACTIVE),
         RequestClass("batch", 0.3, "rag", **_BATCH)),
        (Phase(0.4, 1.0), Phase(0.2, 2.5), Phase(0.4, 1.0)),
        burstiness=1.5,
    ),
    Scenario(
        "long-docs",
        "chat beside documents, a third of them longer than ATOM's compiled length; Poisson",
        (RequestClass("interactive", 0.6, "chat", **_INTERACTIVE),
         RequestClass("batch", 0.4, "document", **_BATCH)),
    ),
    Scenario(
        "three-classes",
        "tight, standard and relaxed targets on chat and RAG; the rate steps up by half midway",
        (RequestClass("tight", 0.3, "chat", slo_ttft_ms=250.0, slo_tpot_ms=25.0),
         RequestClass("standard", 0.4, "chat", slo_ttft_ms=1000.0, slo_tpot_ms=60.0),
         RequestClass("relaxed", 0.3, "rag", slo_ttft_ms=20_000.0, slo_tpot_ms=250.0)),
        (Phase(0.5, 1.0), Phase(0.5, 1.5)),
        burstiness=1.2,
    ),
)}


def piecewise_times(u: np.ndarray, phases: tuple[Phase, ...], rate: float, span: float) -> np.ndarray:
    """Map operational times ``u`` (unit-rate arrivals) to seconds under the
    phases' rates, scaled so that the mean rate over ``span`` is ``rate``.
    Past the last phase the last rate continues."""
    shares = np.array([p.span for p in phases], dtype=float)
    shares /= shares.sum()
    rel = np.array([p.rate for p in phases], dtype=float)
    rel /= float((shares * rel).sum())  # mean relative rate 1
    t_knots = np.concatenate(([0.0], np.cumsum(shares) * span))
    load_knots = np.concatenate(([0.0], np.cumsum(shares * rel * rate * span)))
    inside = np.interp(u, load_knots, t_knots)
    after = t_knots[-1] + (u - load_knots[-1]) / (rel[-1] * rate)
    return np.where(u <= load_knots[-1], inside, after)


def scenario_trace(name: str, *, model: str, n: int, rate: float, seed: int = 0) -> list[TraceRecord]:
    """``n`` requests of scenario ``name`` at a mean of ``rate`` requests/s."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    if n < 1 or rate <= 0:
        raise ValueError("n must be >= 1 and rate > 0")
    sc = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    u = np.concatenate(([0.0], np.cumsum(unit_gaps(n - 1, "gamma", rng, sc.burstiness))))
    times = piecewise_times(u, sc.phases, rate, n / rate)
    shares = np.array([c.share for c in sc.classes], dtype=float)
    kind = rng.choice(len(sc.classes), size=n, p=shares / shares.sum())
    prompts = np.zeros(n, dtype=int)
    outputs = np.zeros(n, dtype=int)
    for k, cls in enumerate(sc.classes):  # every class draws all n, so shares don't shift the streams
        p_dist, o_dist = LENGTHS[cls.lengths]
        p, o = p_dist.sample(rng, n), o_dist.sample(rng, n)
        prompts = np.where(kind == k, p, prompts)
        outputs = np.where(kind == k, o, outputs)
    return [
        TraceRecord(t=round(float(t), 6), model=model, prompt_tokens=int(p), output_tokens=int(o),
                    slo_ttft_ms=sc.classes[k].slo_ttft_ms, slo_tpot_ms=sc.classes[k].slo_tpot_ms)
        for t, k, p, o in zip(times, kind, prompts, outputs)
    ]


def class_of(scenario: str, slo_ttft_ms: float, slo_tpot_ms: float) -> str:
    """The class name a request's targets belong to in ``scenario``."""
    for cls in SCENARIOS[scenario].classes:
        if cls.slo_ttft_ms == slo_ttft_ms and cls.slo_tpot_ms == slo_tpot_ms:
            return cls.name
    raise ValueError(f"no class of {scenario!r} has targets {slo_ttft_ms}/{slo_tpot_ms} ms")
