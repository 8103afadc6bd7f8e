"""End to end: the runner against the fake OpenAI-compatible server (no socket)."""

import asyncio

import httpx
import pytest

from loadtests.config import DataSpec, LoadSpec, RunSpec
from loadtests.fake_server import FakeConfig, FakeOpenAI
from loadtests.runner import run
from fleet.trace import TraceRecord, write_trace


def _run(spec, fake):
    async def go():
        async with httpx.AsyncClient(transport=fake.mock_transport()) as client:
            return await run(spec, client=client, progress=False)

    return asyncio.run(go())


def _spec(load, **kw):
    data = kw.pop("data", DataSpec(prompt_tokens=32, output_tokens=6))
    return RunSpec(base_url="http://fake", load=load, data=data, timeout_s=10, **kw)


def test_open_loop_counts_errors_by_type_pools_and_energy():
    fake = FakeOpenAI(FakeConfig(ttft_s=0.01, itl_s=0.002, statuses=(200, 200, 429, 200, 503)))
    outcome = _run(_spec(LoadSpec(arrival="constant", rate=400, requests=40), endpoint="completions"), fake)
    s = outcome.summary
    assert (s.requests, s.ok, s.failed) == (40, 24, 16)
    assert s.errors == {"http_429": 8, "http_503": 8}
    assert outcome.stopped_by == "complete"
    assert {name: p.requests for name, p in s.pools.items()} == {"gpu-a": 12, "npu-b": 12}
    assert s.output_tokens == 24 * 6
    # The fake's 10 ms TTFT and 2 ms ITL are floors; a busy machine only adds to them, so no upper bound.
    assert s.ttft_ms.p50 >= 10
    assert s.tpot_ms.p50 >= 1
    assert s.energy.j_per_token == pytest.approx((72 * 0.1 + 72 * 0.2) / 144)
    assert s.energy.j_per_token_total == pytest.approx(s.energy.j_per_token * 1.5)
    assert s.model_dump()["pools"]  # JSON-ready
    assert all(r.model == "fake-model" for r in outcome.results)  # resolved from /v1/models


def test_missing_fleet_endpoint_is_a_note_not_a_failure():
    fake = FakeOpenAI(FakeConfig(fleet=False))
    outcome = _run(_spec(LoadSpec(arrival="poisson", rate=500, requests=5), model="m"), fake)
    assert outcome.summary.ok == 5
    assert outcome.summary.energy is None
    assert "404" in outcome.summary.energy_note


def test_closed_loop_keeps_concurrency_and_stops_on_requests():
    fake = FakeOpenAI(FakeConfig(ttft_s=0.01, itl_s=0.001, capacity=None))
    outcome = _run(_spec(LoadSpec(arrival="closed", concurrency=4, requests=20)), fake)
    assert outcome.summary.ok == 20 and outcome.stopped_by == "requests"
    starts = sorted(r.sent_s for r in outcome.results)
    ends = sorted(r.sent_s + r.e2e_s for r in outcome.results)
    in_flight = max(sum(s <= t for s in starts) - sum(e <= t for e in ends) for t in starts)
    assert in_flight == 4


def test_error_rate_stops_the_run_early():
    fake = FakeOpenAI(FakeConfig(ttft_s=0.001, itl_s=0.0, statuses=(500,)))
    outcome = _run(_spec(LoadSpec(arrival="closed", concurrency=2, requests=500, max_error_rate=0.5)), fake)
    assert outcome.stopped_by == "error_rate"
    assert outcome.summary.requests < 40


def test_duration_stops_an_open_loop():
    fake = FakeOpenAI(FakeConfig(ttft_s=0.001, itl_s=0.0))
    outcome = _run(_spec(LoadSpec(arrival="constant", rate=100, duration_s=0.3)), fake)
    assert outcome.summary.requests == 30


def test_trace_replay_keeps_arrival_times_and_per_request_targets(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(path, [
        TraceRecord(t=0.0, model="a", prompt_tokens=8, output_tokens=3, slo_ttft_ms=1.0),
        TraceRecord(t=0.1, model="a", prompt_tokens=8, output_tokens=3),
        TraceRecord(t=0.2, model="a", prompt_tokens=8, output_tokens=3),
    ])  # fmt: skip
    fake = FakeOpenAI(FakeConfig(ttft_s=0.005, itl_s=0.001))
    spec = _spec(LoadSpec(arrival="trace"), data=DataSpec(dataset="trace", trace=str(path)))
    outcome = _run(spec, fake)
    assert [r.scheduled_s for r in outcome.results] == pytest.approx([0.0, 0.1, 0.2], abs=0.01)
    # Never sent early, and sent in the trace's order (how late is the machine's business).
    assert all(r.sent_s >= r.scheduled_s - 1e-3 for r in outcome.results)
    assert sorted(outcome.results, key=lambda r: r.sent_s) == sorted(outcome.results, key=lambda r: r.scheduled_s)
    assert outcome.summary.good == 2  # the first misses its own 1 ms TTFT target


def test_trace_replay_sends_each_request_its_own_targets_as_headers(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(path, [
        TraceRecord(t=0.0, model="a", prompt_tokens=8, output_tokens=2, slo_ttft_ms=250.0, slo_tpot_ms=25.0),
        TraceRecord(t=0.01, model="a", prompt_tokens=8, output_tokens=2),
    ])  # fmt: skip
    fake, seen = FakeOpenAI(FakeConfig(ttft_s=0.001, itl_s=0.001)), []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/completions"):
            seen.append((request.headers.get("x-hetserve-slo-ttft-ms"), request.headers.get("x-hetserve-slo-tpot-ms")))
        reply = fake.handle(request.method, request.url.path, await request.aread())
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            spec = _spec(LoadSpec(arrival="trace"), data=DataSpec(dataset="trace", trace=str(path)))
            return await run(spec, client=client, progress=False)

    asyncio.run(go())
    assert sorted(seen, key=str) == sorted([("250", "25"), (None, None)], key=str)


def test_sweep_steps_the_rate_until_throughput_stops_growing():
    # One stream at a time of about 4.5 ms: the fake cannot serve more than ~220 requests/s.
    fake = FakeOpenAI(FakeConfig(ttft_s=0.002, itl_s=0.0005, capacity=1))
    load = LoadSpec(arrival="sweep", rate=40, sweep_factor=2, duration_s=0.2, sweep_max_steps=6)
    outcome = _run(_spec(load), fake)
    rates = [s.rate for s in outcome.steps]
    assert rates == [40 * 2**i for i in range(len(rates))]
    assert outcome.stopped_by == "saturated"
    assert len(rates) >= 2  # saturation is a comparison of two steps; when it comes depends on the machine
    last = outcome.steps[-1]
    assert last.summary.request_throughput < min(230, 0.75 * last.rate)  # offered more than it got
    assert outcome.summary.requests == sum(s.summary.requests for s in outcome.steps)


def test_a_trace_longer_than_the_synthetic_default_replays_whole_at_an_openai_style_base_url(tmp_path):
    path = tmp_path / "long.jsonl"
    write_trace(path, [TraceRecord(t=i * 0.0005, model="a", prompt_tokens=8, output_tokens=2) for i in range(250)])
    fake = FakeOpenAI(FakeConfig(ttft_s=0.0, itl_s=0.0))
    spec = RunSpec(base_url="http://fake/v1", load=LoadSpec(arrival="trace"), data=DataSpec(dataset="trace", trace=str(path)),
                   timeout_s=10)  # fmt: skip
    outcome = _run(spec, fake)
    assert outcome.summary.requests == 250  # the synthetic default (200) does not cut a trace
    assert outcome.summary.failed == 0  # no /v1/v1 404s
    assert outcome.stopped_by == "complete"
