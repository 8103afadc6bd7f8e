"""The real vLLM pool's engine process killed, then a SIGTERM to the whole process group.

One ``hetserve serve`` (an emulated pool plus the CPU vLLM pool) in a
process group of its own, as a service manager runs it.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import REAL_MODEL
from tests.integration import serve_process
from tests.integration.drain_check import check_graceful_stop

pytestmark = [pytest.mark.ray, pytest.mark.engine]

FLEET = {
    "gateway": {"poll_interval_s": 0.5, "drain_timeout_s": 30, "shutdown_timeout_s": 30,
                "failover": {"ejection_base_s": 30}},
    "pools": [
        {"name": "emu", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": ["m-ok"],
         "engine_args": {"time_scale": 2}},
        {"name": "cpu-vllm", "hardware": "cpu", "engine": "vllm", "model": "tiny-llama", "models": [REAL_MODEL],
         "engine_args": {"dtype": "bfloat16", "max_model_len": 512, "max_num_seqs": 8},
         "resources": {"CPU": 1}, "max_ongoing_requests": 8, "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = serve_process.start(FLEET, tmp_path_factory.mktemp("engine-death"), ready_model=REAL_MODEL, timeout_s=300)
    yield s
    serve_process.stop(s)


def test_vllm_honours_penalties_and_structured_output_and_emulated_pools_refuse_them(server):
    body = {"messages": [{"role": "user", "content": "json please"}], "max_tokens": 8, "presence_penalty": 0.5,
            "frequency_penalty": 0.5, "logit_bias": {"5": -100}, "response_format": {"type": "json_object"}}
    r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": REAL_MODEL, **body}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["x-hetserve-pool"] == "cpu-vllm"
    r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "m-ok", **body}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    assert r.json()["error"]["param"] in body


def test_a_killed_engine_process_gets_clean_503s_and_its_pool_ejected(server):
    (engine,) = server.find("EngineCore")
    engine.kill()
    engine.wait(10)
    answers = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(answers) < 3:
        r = httpx.post(f"{server.url}/v1/completions", json={"model": REAL_MODEL, "prompt": "hi", "max_tokens": 4},
                       timeout=60)
        assert r.status_code != 500, r.text  # never an internal error
        answers.append(r)
    assert all(r.status_code == 503 for r in answers), [(r.status_code, r.text) for r in answers]
    assert all(set(r.json()["error"]) == {"message", "type", "param", "code"} for r in answers)
    pool = {p["name"]: p for p in httpx.get(f"{server.url}/v1/fleet?profiles=false", timeout=10).json()["pools"]}
    assert pool["cpu-vllm"]["healthy"] is False
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'hetserve_pool_ejected{pool="cpu-vllm"} 1.0' in metrics
    # the emulated pool keeps serving
    r = httpx.post(f"{server.url}/v1/completions", json={"model": "m-ok", "prompt": "hi", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200


def test_sigterm_to_the_process_group_drains_then_stops_everything(server):
    seen = check_graceful_stop(
        server, "m-ok", 500, lambda: os.killpg(server.proc.pid, signal.SIGTERM), stop_bound_s=90,
    )
    # 1: Serve's shutdown overran its bound and the leftovers were killed (vLLM's teardown is slow on a busy
    # machine); either way every process is gone, which check_graceful_stop asserted.
    print(f"\nSIGTERM to the process group: {seen}")
    assert seen["returncode"] in (0, 1), server.output()[-2000:]
    assert "hetserve: stopped" in server.output()
