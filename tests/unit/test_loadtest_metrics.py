import pytest

from fleet.api import FleetView
from loadtests.fleet import energy_between
from loadtests.metrics import Targets, is_good, summarize
from loadtests.result import RequestResult


def _result(index=0, ttft=0.1, e2e=1.0, tokens=10, pool="gpu", error=None, sent=0.0, **slo):
    chunks = [ttft + i * (e2e - ttft) / max(tokens - 1, 1) for i in range(tokens)] if error is None else []
    return RequestResult(
        index=index, model="m", scheduled_s=None, sent_s=sent, prompt_tokens=100, output_tokens=tokens,
        e2e_s=e2e, chunk_s=chunks, pool=pool, error_type=error, **slo,
    )  # fmt: skip


def test_no_targets_means_every_success_is_good():
    assert is_good(_result(), Targets())
    assert not is_good(_result(error="http_500"), Targets())


def test_each_metric_with_a_target_must_pass():
    r = _result(ttft=0.2, e2e=2.0, tokens=10)  # TPOT 200 ms
    assert is_good(r, Targets(ttft_ms=200, tpot_ms=200, e2e_ms=2000))
    assert not is_good(r, Targets(ttft_ms=199))
    assert not is_good(r, Targets(tpot_ms=199))
    assert not is_good(r, Targets(e2e_ms=1999))


def test_request_target_overrides_run_target():
    strict = _result(ttft=0.2, slo_ttft_ms=100)
    assert not is_good(strict, Targets(ttft_ms=1000))
    lenient = _result(ttft=0.2, slo_ttft_ms=300)
    assert is_good(lenient, Targets(ttft_ms=100))


def test_single_token_output_passes_tpot():
    r = _result(ttft=0.5, e2e=0.5, tokens=1)
    assert r.tpot_s is None
    assert is_good(r, Targets(tpot_ms=1))


def test_summary_counts_throughput_goodput_errors_and_pools():
    results = [
        _result(0, ttft=0.1, sent=0.0, pool="gpu"),
        _result(1, ttft=0.3, sent=1.0, pool="npu"),
        _result(2, ttft=0.1, sent=2.0, pool="npu"),
        _result(3, error="http_429", sent=2.5, pool=None),
        _result(4, error="http_429", sent=2.5, pool=None),
        _result(5, error="timeout", sent=2.5, pool=None),
    ]
    s = summarize(results, Targets(ttft_ms=200))
    assert s.duration_s == pytest.approx(3.5)  # first send 0.0 to last end 2.5 + 1.0
    assert (s.requests, s.ok, s.failed, s.good) == (6, 3, 3, 2)
    assert s.request_throughput == pytest.approx(3 / 3.5)
    assert s.output_throughput == pytest.approx(30 / 3.5)
    assert s.goodput == pytest.approx(2 / 3.5)
    assert s.errors == {"http_429": 2, "timeout": 1}
    assert s.pools["npu"].share == pytest.approx(2 / 3) and s.pools["gpu"].requests == 1
    assert s.ttft_ms.p50 == pytest.approx(100.0)
    assert s.ttft_ms.mean == pytest.approx(500 / 3)


def test_percentiles_interpolate_linearly():
    results = [_result(i, ttft=t / 1000) for i, t in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])]
    s = summarize(results)
    assert s.ttft_ms.p50 == pytest.approx(55.0)
    assert s.ttft_ms.p90 == pytest.approx(91.0)
    assert s.ttft_ms.p99 == pytest.approx(99.1)


def _pool(name, tokens, joules, total):
    return {"name": name, "output_tokens": tokens, "energy_joules": joules, "energy_total_joules": total}


def test_energy_per_token_attributed_and_total_per_pool():
    before = FleetView.model_validate({"pools": [_pool("gpu", 1000, 100.0, 500.0)]})
    after = FleetView.model_validate({"pools": [_pool("gpu", 3000, 500.0, 1500.0), _pool("npu", 1000, 100.0, 150.0)]})
    e = energy_between(before, after)
    gpu, npu = e.pools
    assert (gpu.output_tokens, gpu.j_per_token, gpu.j_per_token_total) == (2000, 0.2, 0.5)
    assert (npu.output_tokens, npu.j_per_token, npu.j_per_token_total) == (1000, 0.1, 0.15)
    assert e.j_per_token == pytest.approx(500 / 3000)
    assert e.j_per_token_total == pytest.approx(1150 / 3000)


# -- SLO accounting against hand-computed cases (docs/loadtest.md, "SLO accounting") -------------


def test_hand_computed_run_within_targets():
    """Run targets: TTFT 200 ms, TPOT 50 ms, E2E 1,000 ms. TPOT = (e2e - ttft) / (tokens - 1)."""
    results = [
        _result(0, ttft=0.150, e2e=0.600, tokens=10),  # TPOT 50 ms: all on the line -> good
        _result(1, ttft=0.250, e2e=0.700, tokens=10),  # TTFT 250 > 200 -> miss
        _result(2, ttft=0.100, e2e=0.650, tokens=10),  # TPOT 61.1 > 50 -> miss
        _result(3, ttft=0.100, e2e=1.100, tokens=100),  # TPOT 10.1, E2E 1,100 > 1,000 -> miss
        _result(4, ttft=0.300, e2e=0.600, tokens=10, slo_ttft_ms=400),  # own TTFT target 400 wins -> good
        _result(5, ttft=0.150, e2e=0.500, tokens=10, slo_ttft_ms=100),  # own 100 is stricter -> miss
        _result(6, ttft=0.190, e2e=0.190, tokens=1),  # one token: no TPOT -> good
        _result(7, ttft=0.100, e2e=0.400, tokens=10, slo_tpot_ms=30),  # TPOT 33.3 > own 30 -> miss
        _result(8, error="http_503"),  # failed: never good, still counted
        _result(9, error="timeout"),
    ]
    s = summarize(results, Targets(ttft_ms=200, tpot_ms=50, e2e_ms=1000), duration_s=5.0)
    assert [is_good(r, s.targets) for r in results] == [True, False, False, False, True, False, True, False, False, False]
    assert (s.requests, s.ok, s.good) == (10, 8, 3)
    assert s.within_targets == pytest.approx(0.3)  # 3 good of 10 sent, failures included
    assert s.goodput == pytest.approx(3 / 5.0)


def test_a_zero_request_target_is_a_target_not_a_missing_one():
    assert not is_good(_result(ttft=0.001, slo_ttft_ms=0.0), Targets(ttft_ms=1000))


def test_non_streaming_ttft_is_the_whole_response():
    r = RequestResult(index=0, model="m", scheduled_s=None, output_tokens=10, e2e_s=0.5)
    assert r.ttft_s == 0.5 and r.tpot_s == 0.0
    assert not is_good(r, Targets(ttft_ms=400))
    assert is_good(r, Targets(ttft_ms=500))


def test_latency_is_measured_from_send_and_the_clients_lag_is_reported_apart():
    late = RequestResult(index=0, model="m", scheduled_s=1.0, sent_s=1.3, output_tokens=2, e2e_s=0.2, chunk_s=[0.1, 0.2])
    s = summarize([late], Targets(ttft_ms=150))
    assert s.good == 1  # 300 ms of client lag is not charged to the server
    assert s.dispatch_lag_ms.p50 == pytest.approx(300.0)


def test_no_requests_no_share():
    assert summarize([], Targets(ttft_ms=1)).within_targets == 0.0
