import numpy as np
import pytest

from fleet.trace import TraceError, TraceRecord, read_trace, write_trace
from loadtests.workloads import arrival_times, generate_trace, unit_gaps


def test_round_trip_keeps_records_and_drops_unset_fields(tmp_path):
    records = [
        TraceRecord(t=0.0, model="m", prompt_tokens=10, output_tokens=5),
        TraceRecord(t=0.5, model="m", prompt_tokens=20, output_tokens=7, slo_ttft_ms=200.0, slo_tpot_ms=30.0),
    ]
    path = tmp_path / "t.jsonl"
    write_trace(path, records)
    assert "slo_ttft_ms" not in path.read_text().splitlines()[0]
    assert read_trace(path) == records


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"t": 1, "model": "m", "prompt_tokens": 3}', ":2: output_tokens: Field required"),
        ('{"t": 1, "model": "m", "prompt_tokens": 0, "output_tokens": 1}', ":2: prompt_tokens: "),
        ('{"t": 1, "model": "m", "prompt_tokens": 3, "output_tokens": 1, "slo_ttft": 5}', ":2: slo_ttft: Extra"),
        ('{"t": "soon", "model": "m", "prompt_tokens": 3, "output_tokens": 1}', ":2: t: "),
        ('{"t": 0.5, "model": "m", "prompt_tokens": 3, "output_tokens": 1}', ":2: t: 0.5 is before"),
        ("[1, 2]", ":2: expected a JSON object"),
        ("{oops", ":2: not JSON"),
    ],
)
def test_errors_name_line_and_key(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 1, "model": "m", "prompt_tokens": 3, "output_tokens": 2}\n' + line + "\n")
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        read_trace(path)


@pytest.mark.parametrize("arrival", ["constant", "poisson", "gamma"])
def test_generated_rate_matches_and_seed_reproduces(arrival):
    a = generate_trace(model="m", rate=50, n=4000, arrival=arrival, burstiness=2.0, seed=3)
    b = generate_trace(model="m", rate=50, n=4000, arrival=arrival, burstiness=2.0, seed=3)
    c = generate_trace(model="m", rate=50, n=4000, arrival=arrival, burstiness=2.0, seed=4)
    assert a == b
    assert a[0].t == 0.0
    assert (len(a) - 1) / a[-1].t == pytest.approx(50, rel=0.1)
    if arrival != "constant":
        assert a != c


def test_gamma_burstiness_is_the_coefficient_of_variation():
    rng = np.random.default_rng(0)
    for cv in (0.5, 1.0, 3.0):
        gaps = unit_gaps(200_000, "gamma", rng, burstiness=cv)
        assert gaps.mean() == pytest.approx(1.0, rel=0.03)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_duration_cuts_arrivals():
    trace = generate_trace(model="m", rate=10, duration=5.0, arrival="constant")
    assert len(trace) == 50 and trace[-1].t < 5.0


def test_ramp_rises_linearly():
    trace = generate_trace(model="m", rate=10, rate_end=30, duration=10.0, arrival="constant")
    assert len(trace) == pytest.approx(200, abs=1)  # mean rate 20 over 10 s
    first, last = trace[:2], trace[-2:]
    assert 1 / (first[1].t - first[0].t) == pytest.approx(10, rel=0.05)
    assert 1 / (last[1].t - last[0].t) == pytest.approx(30, rel=0.05)


def test_ramp_holds_the_end_rate_after_its_span():
    times = arrival_times(np.array([150.0, 180.0]), rate=10, rate_end=20, span=10.0)
    assert times[1] - times[0] == pytest.approx(30 / 20)


@pytest.mark.parametrize(
    ("lengths", "prompt_median", "output_median"), [("chat", 256, 256), ("long-doc", 4096, 128)]
)
def test_length_profiles(lengths, prompt_median, output_median):
    trace = generate_trace(model="m", rate=1, n=2000, lengths=lengths)
    assert np.median([r.prompt_tokens for r in trace]) == pytest.approx(prompt_median, rel=0.1)
    assert np.median([r.output_tokens for r in trace]) == pytest.approx(output_median, rel=0.1)


def test_mixed_profile_and_fixed_overrides():
    mixed = generate_trace(model="m", rate=1, n=2000, lengths="mixed")
    long_share = np.mean([r.prompt_tokens >= 1024 for r in mixed])
    assert 0.15 < long_share < 0.35
    fixed = generate_trace(model="m", rate=1, n=10, lengths="chat", prompt_tokens=64, output_tokens=8)
    assert {(r.prompt_tokens, r.output_tokens) for r in fixed} == {(64, 8)}
