"""The real vLLM pool's engine process killed, then a SIGTERM to the whole process group.

One ``hetserve serve`` (an emulated pool plus the CPU vLLM pool) in a
process group of its own, as a service manager runs it.
"""

from __future__ import annotations

import json
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
         "engine_args": {"dtype": "bfloat16", "max_model_len": 512, "max_num_seqs": 8, "tool_call_parser": "pythonic",
                         # compact JSON: the tiny model would pad a forced call with whitespace past max_tokens
                         "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}},
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


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Seoul", "Paris"]}}, "required": ["city"],
    "additionalProperties": False}}}  # fmt: skip


def test_tool_calls_on_the_vllm_pool_through_the_official_client(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "What is the weather in Seoul?"}]
    forced = {"type": "function", "function": {"name": "weather"}}
    named = client.chat.completions.create(model=REAL_MODEL, messages=messages, tools=[WEATHER], tool_choice=forced,
                                           max_tokens=48, temperature=0)  # fmt: skip
    (call,) = named.choices[0].message.tool_calls
    assert named.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"
    assert json.loads(call.function.arguments)["city"] in ("Seoul", "Paris")  # the grammar allows nothing else

    required = client.chat.completions.create(model=REAL_MODEL, messages=messages, tools=[WEATHER],
                                              tool_choice="required", parallel_tool_calls=False, max_tokens=64,
                                              temperature=0, stream=True)  # fmt: skip
    calls = [c for chunk in required for choice in chunk.choices for c in choice.delta.tool_calls or ()]
    assert [c.function.name for c in calls] == ["weather"] and calls[0].index == 0

    # "auto": the tiny model's free text goes through vLLM's pythonic parser; a call or text, never an error
    auto = client.chat.completions.create(model=REAL_MODEL, messages=messages, tools=[WEATHER], max_tokens=16)
    choice = auto.choices[0]
    assert (choice.finish_reason == "tool_calls") == bool(choice.message.tool_calls)
    assert choice.message.tool_calls or choice.message.content is not None

    # a follow-up turn that carries the call and its answer renders and runs
    follow = messages + [named.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]  # fmt: skip
    after = client.chat.completions.create(model=REAL_MODEL, messages=follow, tools=[WEATHER], tool_choice="none",
                                           max_tokens=4)  # fmt: skip
    assert after.choices[0].message.content is not None and not after.choices[0].message.tool_calls
    # the emulated pool has no parser: refused by name
    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=30,
                   json={"model": "m-ok", "messages": messages, "tools": [WEATHER]})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"


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
