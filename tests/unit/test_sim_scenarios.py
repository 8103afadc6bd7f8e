"""The evaluation traces: seeded, per-request SLO classes, bursts, long documents."""

import numpy as np
import pytest

from sim.scenarios import SCENARIOS, Phase, class_of, piecewise_times, scenario_trace

MODEL = "m"


def _arrays(records):
    t = np.array([r.t for r in records])
    p = np.array([r.prompt_tokens for r in records])
    return t, p


def test_same_seed_same_trace_and_rate_only_scales_time():
    a = scenario_trace("bursty", model=MODEL, n=300, rate=4.0, seed=3)
    b = scenario_trace("bursty", model=MODEL, n=300, rate=4.0, seed=3)
    c = scenario_trace("bursty", model=MODEL, n=300, rate=8.0, seed=3)
    assert a == b
    assert [(r.prompt_tokens, r.output_tokens, r.slo_ttft_ms) for r in a] == \
        [(r.prompt_tokens, r.output_tokens, r.slo_ttft_ms) for r in c]
    np.testing.assert_allclose(_arrays(a)[0], 2 * _arrays(c)[0], rtol=1e-5, atol=1e-5)
    assert a != scenario_trace("bursty", model=MODEL, n=300, rate=4.0, seed=4)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_classes_carry_their_targets_in_their_shares(name):
    records = scenario_trace(name, model=MODEL, n=4000, rate=10.0, seed=1)
    sc = SCENARIOS[name]
    assert len(sc.classes) >= 2
    names = [class_of(name, r.slo_ttft_ms, r.slo_tpot_ms) for r in records]
    for cls in sc.classes:
        assert abs(names.count(cls.name) / len(records) - cls.share) < 0.03
    t, _ = _arrays(records)
    assert t[0] == 0 and np.all(np.diff(t) >= 0)
    assert abs(len(records) / t[-1] - 10.0) < 1.0  # the mean rate is the asked one


def test_bursty_trace_changes_rate_mid_trace():
    t, _ = _arrays(scenario_trace("bursty", model=MODEL, n=6000, rate=10.0, seed=2))
    span = t[-1]
    def rate(a, b):
        return ((t >= a * span) & (t < b * span)).sum() / ((b - a) * span)
    lull, burst = rate(0.05, 0.35), rate(0.45, 0.55)
    assert burst / lull == pytest.approx(2.5, rel=0.2)


def test_long_docs_exceed_an_npu_compiled_length():
    _, p = _arrays(scenario_trace("long-docs", model=MODEL, n=2000, rate=5.0, seed=1))
    assert (p > 8192).mean() > 0.05  # ATOM compiles 8,192 tokens
    assert (p < 1024).mean() > 0.3  # beside chat-length prompts


def test_piecewise_times_keep_the_mean_rate_and_the_phase_rates():
    u = np.arange(0, 1000, dtype=float)  # unit-rate arrivals, evenly spaced
    t = piecewise_times(u, (Phase(0.5, 1.0), Phase(0.5, 3.0)), rate=2.0, span=500.0)
    assert t[-1] == pytest.approx(500.0, rel=0.01)
    first, second = (t < 250).sum() / 250, (t >= 250).sum() / 250
    assert second / first == pytest.approx(3.0, rel=0.02)
    assert np.all(np.diff(t) > 0)


def test_unknown_scenario_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_trace("nope", model=MODEL, n=10, rate=1.0)
    with pytest.raises(ValueError):
        scenario_trace("bursty", model=MODEL, n=0, rate=1.0)
