"""A client that goes away mid-stream frees the pool: the engine request is aborted."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import EMULATED_MODEL, REAL_MODEL

pytestmark = pytest.mark.engine


def _pool(gateway_url: str, name: str) -> dict:
    pools = httpx.get(f"{gateway_url}/v1/fleet", timeout=10).json()["pools"]
    return next(p for p in pools if p["name"] == name)


def _disconnect_after_two_chunks(gateway_url: str, model: str, pool: str, max_tokens: int) -> None:
    body = {"model": model, "prompt": "go on", "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
    with httpx.stream(
        "POST", f"{gateway_url}/v1/completions", json=body, headers={"x-hetserve-pool-pin": pool}, timeout=30
    ) as r:
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen == 2:
                    break


def _wait_until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_disconnect_aborts_emulated_sequence(gateway_url):
    # 4,000 tokens on the emulated H100 take about 20 s; the pool must be idle long before.
    _disconnect_after_two_chunks(gateway_url, EMULATED_MODEL, "h100", 4000)
    assert _wait_until(lambda: (p := _pool(gateway_url, "h100"))["in_flight"] == 0 and p["running"] == 0, 5)


def test_disconnect_aborts_vllm_request(gateway_url):
    before = _pool(gateway_url, "cpu-vllm")["output_tokens"]
    _disconnect_after_two_chunks(gateway_url, REAL_MODEL, "cpu-vllm", 1900)
    assert _wait_until(lambda: _pool(gateway_url, "cpu-vllm")["in_flight"] == 0, 5)
    # The adapter counts the tokens its aborted request made once vLLM ends it.
    assert _wait_until(lambda: _pool(gateway_url, "cpu-vllm")["output_tokens"] > before, 10)
    made = _pool(gateway_url, "cpu-vllm")["output_tokens"] - before
    assert made < 1900
