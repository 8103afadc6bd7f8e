"""Shared fixtures: one Ray cluster and one hetserve app for the whole session.

Starting Ray and the default fleet (with its real vLLM engine) costs about
45 s here, so every integration test shares one running app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from deploy.ingress import free_port

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")

EMULATED_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
REAL_MODEL = "tiny-llama"
ADMIN_KEY = "test-admin-key"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def quick_bench(tmp_path):
    """Runs ``bench/SCRIPT --quick --workers 1`` into a temporary JSON; returns (that JSON, stdout)."""

    def run(script: str) -> tuple[dict, str]:
        out = tmp_path / f"{Path(script).stem}.json"
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--workers", "1",
                               "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        return json.loads(out.read_text()), proc.stdout

    return run


@pytest.fixture(scope="session")
def trace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spans")


@pytest.fixture(scope="session")
def gateway_url(trace_dir):
    """The default fleet, started on a free loopback port, spans written to
    ``trace_dir``; torn down after the session."""
    from gateway import server
    from fleet.config import load_fleet
    from workers.tracing import TracingSpec

    fleet, _ = load_fleet(None)
    fleet.gateway.port = free_port()
    fleet.gateway.poll_interval_s = 0.5
    fleet.tracing = TracingSpec(exporter="file", directory=str(trace_dir))
    fleet.gateway.record_trace = str(trace_dir / "recorded.jsonl")
    running = server.start(fleet, num_cpus=2, admin_key=ADMIN_KEY)
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                r = httpx.post(
                    f"{running.url}/v1/completions",
                    json={"model": REAL_MODEL, "prompt": "warm up", "max_tokens": 2},
                    timeout=30,
                )
                if r.status_code == 200:
                    break
                # 503 is the documented answer while a pool is still starting (the gateway
                # counts a pool ready once a poll answers); any other 5xx is a failure.
                if r.status_code >= 500 and r.status_code != 503:
                    raise RuntimeError(f"hetserve failed its first request: {r.status_code} {r.text}")
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hetserve did not answer within 240 s")
            time.sleep(1)
        yield running.url
    finally:
        server.stop(running)


@pytest.fixture(scope="session")
def client(gateway_url):
    import openai

    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def async_client(gateway_url):
    import openai

    return openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=60)


#: A test whose call runs longer than this gets the stacks of every Serve replica and the gateway dumped
#: (py-spy) into test-artifacts/stalls/: a request that hangs in CI then leaves where each process was.
STALL_S = float(os.environ.get("HETSERVE_TEST_STALL_S", "180"))
STALL_DIR = ROOT / "test-artifacts" / "stalls"


def _dump_stacks(test_id: str) -> Path | None:
    """py-spy dumps of the Ray Serve actors on this machine; the file written (None without py-spy)."""
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if spy is None:
        return None
    import psutil  # the project's dependency; the contract tests' side environments lack both

    STALL_DIR.mkdir(parents=True, exist_ok=True)
    out = STALL_DIR / (re.sub(r"[^\w.-]+", "_", test_id)[:150] + ".txt")
    with out.open("w") as f:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if not cmd.startswith(("ray::ServeReplica", "ray::ServeController", "ray::ProxyActor")):
                continue
            f.write(f"=== {proc.info['pid']} {cmd[:120]}\n")
            done = subprocess.run([spy, "dump", "--pid", str(proc.info["pid"])], capture_output=True, text=True,
                                  timeout=60)  # fmt: skip
            f.write(done.stdout or done.stderr)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def stalled() -> None:
        where = _dump_stacks(item.nodeid)
        print(f"\n{item.nodeid} still running after {STALL_S:g} s; stacks: {where or 'py-spy not installed'}",
              file=sys.stderr, flush=True)  # fmt: skip

    timer = threading.Timer(STALL_S, stalled)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
