"""The graceful-stop check both SIGTERM tests share: a stream in flight finishes, new requests get 503, nothing is left."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import psutil

from tests.integration.serve_process import ServeProcess


def stream_in_background(url: str, model: str, max_tokens: int, events: list[str]) -> tuple[threading.Thread, threading.Event, dict]:
    """A streamed completion in a thread; ``events`` gets "first byte" and "stream ended" in order."""
    started = threading.Event()
    result: dict = {"chunks": [], "errors": []}

    def run() -> None:
        body = {"model": model, "prompt": "drain me", "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
        try:
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
                result["status"] = r.status_code
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if not started.is_set():
                        events.append("first byte")
                        started.set()
                    if data == "[DONE]":
                        result["done"] = True
                        continue
                    chunk = json.loads(data)
                    (result["errors"] if "error" in chunk else result["chunks"]).append(chunk)
        except httpx.HTTPError as exc:
            result["exception"] = repr(exc)
        finally:
            events.append("stream ended")
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, started, result


def check_graceful_stop(server: ServeProcess, model: str, max_tokens: int, send_sigterm: Callable[[], None],
                        stop_bound_s: float) -> dict:
    """SIGTERM (as ``send_sigterm`` sends it) while a stream is in flight; returns what was seen."""
    events: list[str] = []
    thread, started, stream = stream_in_background(server.url, model, max_tokens, events)
    assert started.wait(60) and events == ["first byte"], (events, stream)
    processes = server.processes()
    assert len(processes) > 5  # the supervisor, the server, Ray's processes and the replicas
    send_sigterm()
    seen: dict = {"accepted_after_sigterm": 0}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{server.url}/v1/completions", json={"model": model, "prompt": "new", "max_tokens": 1},
                           timeout=30)
        except httpx.HTTPError as exc:
            raise AssertionError(f"a new request during the drain failed at the connection: {exc!r}") from None
        if r.status_code == 503:
            error = r.json()["error"]
            assert error["code"] == "shutting_down" and r.headers["retry-after"]
            events.append("503 shutting_down")
            break
        assert r.status_code == 200, r.text  # the SIGTERM has not reached the gateway yet
        seen["accepted_after_sigterm"] += 1
        time.sleep(0.05)
    thread.join(120)
    # The drain: new requests were refused while the stream in flight was still running, and it finished.
    assert events == ["first byte", "503 shutting_down", "stream ended"], (events, stream)
    assert stream.get("status") == 200 and stream.get("done") and not stream["errors"], stream
    assert stream["chunks"][-1]["choices"][0]["finish_reason"] == "length"
    # Then everything hetserve started is gone, within the bound.
    t0 = time.monotonic()
    server.proc.wait(stop_bound_s)
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]
    seen["stopped_s"] = time.monotonic() - t0
    seen["returncode"] = server.proc.returncode
    seen["processes"] = len(processes)
    return seen
