"""Faults on a live gateway of emulated pools (one ``hetserve serve`` process for the module).

A pool that hangs before its first token (failover), one that stalls mid-stream
(error event), a replica killed with SIGKILL under load, and last a SIGTERM to
the ``hetserve serve`` process: drain, 503 for new requests, nothing left.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.integration import serve_process
from tests.integration.drain_check import check_graceful_stop, stream_in_background

pytestmark = pytest.mark.ray

EMULATED = {"hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "max_ongoing_requests": 64}
FLEET = {
    "gateway": {
        "poll_interval_s": 0.5,
        "timeouts": {"first_token_s": 3, "idle_s": 3},
        "failover": {"max_attempts": 2, "retry_budget_min": 100, "ejection_base_s": 30},
        "drain_timeout_s": 30,
        "shutdown_timeout_s": 40,
    },
    "routing": {"policy": "round-robin"},
    "pools": [
        {"name": "fast-a", "models": ["m-ok", "m-hang"], **EMULATED, "engine_args": {"time_scale": 2}},
        {"name": "fast-b", "models": ["m-ok"], **EMULATED, "engine_args": {"time_scale": 2}},
        {"name": "hung", "models": ["m-hang"], **EMULATED, "engine_args": {"fault": {"hang_after_tokens": 0}}},
        {"name": "stall", "models": ["m-stall"], **EMULATED, "engine_args": {"fault": {"hang_after_tokens": 2}}},
        {"name": "pair", "models": ["m-pair"], **EMULATED, "replicas": 2},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = serve_process.start(FLEET, tmp_path_factory.mktemp("faults"), ready_model="m-ok")
    yield s
    serve_process.stop(s)


def _fleet(server) -> dict:
    pools = httpx.get(f"{server.url}/v1/fleet?profiles=false", timeout=10).json()["pools"]
    return {p["name"]: p for p in pools}


def _metric(server, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def test_a_pool_that_hangs_before_its_first_token_is_failed_over_and_ejected(server):
    bodies = [{"model": "m-hang", "prompt": f"hang {i}", "max_tokens": 4, "stream": True} for i in range(4)]
    results: list = [None] * len(bodies)

    def send(i):
        results[i] = httpx.post(f"{server.url}/v1/completions", json=bodies[i], timeout=60)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * len(bodies), [r.text for r in results]
    assert all(r.text.rstrip().endswith("data: [DONE]") and '"error"' not in r.text for r in results)
    assert {r.headers["x-hetserve-pool"] for r in results} == {"fast-a"}
    hung = _fleet(server)["hung"]
    assert hung["healthy"] is False and "no first token" in hung["ejection_reason"]
    assert _metric(server, "hetserve_retries_total", failed_pool="hung") >= 1
    assert _metric(server, "hetserve_pool_ejected", pool="hung") == 1
    assert _metric(server, "hetserve_pool_ejections_total", pool="hung") == 1


def test_a_stream_that_stalls_ends_with_an_error_event_and_done(server):
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=60, json={
        "model": "m-stall", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": True,
    }) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "pool_timeout"
    assert any(json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2])
    assert _metric(server, "hetserve_streams_broken_total", pool="stall") == 1


def test_a_non_streamed_request_to_a_stalled_pool_times_out_by_the_idle_bound(server):
    # The gateway's bound is first_token_s + idle_s / 2 = 4.5 s here; it used to be first_token_s +
    # max_tokens × idle_s = 153 s, past this client's timeout (a ReadTimeout, not this 504).
    r = httpx.post(f"{server.url}/v1/completions", timeout=120,
                   json={"model": "m-stall", "prompt": "hi", "max_tokens": 50})  # fmt: skip
    assert r.status_code == 504 and r.json()["error"]["code"] == "pool_timeout"


def test_the_replicas_of_a_pool_are_routed_to_by_name(server):
    body = {"model": "m-pair", "prompt": "hi", "max_tokens": 4}
    deadline = time.monotonic() + 60
    while True:  # both replicas report their endpoints within a few polls
        ranked = httpx.post(f"{server.url}/v1/routing/explain", json=body, timeout=10).json()["ranked"]
        replicas = {r["replica"] for r in ranked}
        if len(replicas) == 2 and None not in replicas:
            break
        assert time.monotonic() < deadline, ranked
        time.sleep(0.5)
    for _ in range(4):  # round-robin over the two replicas' states
        r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
        assert r.status_code == 200 and r.headers["x-hetserve-pool"] == "pair"
        assert "pair[" in r.headers["x-hetserve-route-reason"]


def test_a_replica_killed_under_load_loses_no_request_that_had_not_started_streaming(server):
    (replica,) = server.find("ServeReplica:hetserve:fast-b")
    n_whole, n_streams = 40, 8
    results: list = [None] * n_whole
    streams = []
    for _ in range(n_streams):
        events: list[str] = []
        thread, started, result = stream_in_background(server.url, "m-ok", 200, events)
        streams.append((thread, started, result))

    def send(i):
        try:
            results[i] = httpx.post(f"{server.url}/v1/completions", timeout=120,
                                    json={"model": "m-ok", "prompt": f"load {i}", "max_tokens": 100}).status_code
        except httpx.HTTPError as exc:
            results[i] = repr(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n_whole)]
    for t in threads[: n_whole // 2]:
        t.start()
    for _, started, _ in streams:
        assert started.wait(60)
    replica.kill()  # SIGKILL, while whole requests and streams run on it and the rest keep arriving
    for t in threads[n_whole // 2:]:
        t.start()
    for t in threads:
        t.join()
    for thread, _, _ in streams:
        thread.join(120)
    assert results == [200] * n_whole, results
    for _, _, result in streams:  # streams already sent bytes: they finish, or end with an error event and [DONE]
        assert result.get("done") and ("exception" not in result), result
        assert result["errors"] or result["chunks"][-1]["choices"][0]["finish_reason"] == "length"
    broken = sum(1 for _, _, r in streams if r["errors"])
    print(f"\nkill under load: {n_whole}/{n_whole} whole requests answered 200; "
          f"{broken}/{n_streams} streams already streaming ended with an error event and [DONE], the rest finished")
    assert broken >= 1  # streams of fast-b were in flight: round-robin gave it half of them
    assert _fleet(server)["fast-b"]["ejection_reason"]
    assert _metric(server, "hetserve_pool_ejected", pool="fast-b") == 1


def test_sigterm_to_the_process_drains_then_stops_everything(server):
    seen = check_graceful_stop(
        server, "m-ok", 500, lambda: server.proc.send_signal(signal.SIGTERM), stop_bound_s=90,
    )
    print(f"\nSIGTERM to the process: {seen}")
    assert seen["returncode"] == 0, server.output()[-2000:]
