"""Spans and metrics for a request through the gateway."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import REAL_MODEL

pytestmark = pytest.mark.engine


def _spans(trace_dir) -> list[dict]:
    return [json.loads(line) for f in trace_dir.glob("spans-*.jsonl") for line in f.read_text().splitlines()]


def test_one_trace_from_gateway_through_routing_into_the_pool(gateway_url, trace_dir):
    r = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": REAL_MODEL, "messages": [{"role": "user", "content": "trace me"}], "max_tokens": 5, "ignore_eos": True},
        headers={"x-request-id": "trace-test-1"},
        timeout=30,
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = _spans(trace_dir)
        roots = [s for s in spans if s["attributes"].get("hetserve.request_id") == "trace-test-1"]
        if roots and any(s["name"] == "generate" and s["trace_id"] == roots[0]["trace_id"] for s in spans):
            break
        time.sleep(0.2)
    root = roots[0]
    assert root["name"] == f"chat {REAL_MODEL}"
    attrs = root["attributes"]
    assert attrs["gen_ai.request.model"] == REAL_MODEL
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.usage.input_tokens"] == r.json()["usage"]["prompt_tokens"]
    assert attrs["hetserve.pool"] == "cpu-vllm" and attrs["hetserve.hardware"] == "cpu"
    assert attrs["hetserve.route_reason"]
    same_trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
    route = next(s for s in same_trace if s["name"] == "route")
    generate = next(s for s in same_trace if s["name"] == "generate")
    assert route["parent_id"] == root["span_id"]
    assert generate["parent_id"] == root["span_id"]
    assert generate["service"] == "hetserve" and generate["attributes"]["hetserve.engine"] == "vllm"


def test_metrics_cover_requests_tokens_energy_and_routing(gateway_url):
    httpx.post(f"{gateway_url}/v1/completions", json={"model": REAL_MODEL, "prompt": "m", "max_tokens": 3}, timeout=30)
    httpx.post(f"{gateway_url}/v1/completions", json={"model": "nope", "prompt": "m"}, timeout=30)
    needles = (
        'hetserve_requests_total{model="tiny-llama",pool="cpu-vllm",status="ok"}',
        'hetserve_time_to_first_token_seconds_bucket{le="0.005",model="tiny-llama",pool="cpu-vllm"}',
        'hetserve_output_tokens_total{model="tiny-llama",pool="cpu-vllm"}',
        'hetserve_routing_decisions_total{model="tiny-llama",policy=',
        'hetserve_errors_total{status="404",type="invalid_request_error"}',
        'hetserve_pool_joules_per_output_token{pool="cpu-vllm"}',
        'hetserve_pool_in_flight_sequences{pool="h100"}',
    )
    deadline = time.monotonic() + 30  # the pool gauges appear with the next poll, whenever a busy machine runs it
    while True:
        text = httpx.get(f"{gateway_url}/metrics").text
        missing = [n for n in needles if n not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert not missing, missing


def test_gateway_records_a_replayable_trace(gateway_url, trace_dir):
    from fleet.trace import read_trace

    for i in range(3):
        r = httpx.post(
            f"{gateway_url}/v1/completions",
            json={"model": REAL_MODEL, "prompt": f"record {i}", "max_tokens": 4, "ignore_eos": True},
            headers={"x-hetserve-slo-ttft-ms": "900"},
            timeout=30,
        )
        assert r.status_code == 200
    path = trace_dir / "recorded.jsonl"
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline:
        records = read_trace(path) if path.exists() else []
        if sum(1 for rec in records if rec.slo_ttft_ms == 900) >= 3:
            break
        time.sleep(0.3)
    mine = [rec for rec in records if rec.slo_ttft_ms == 900]
    assert len(mine) == 3
    assert all(rec.output_tokens == 4 and rec.served.pool == "cpu-vllm" for rec in mine)
    assert [rec.t for rec in records] == sorted(rec.t for rec in records)
