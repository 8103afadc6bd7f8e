"""A ``hetserve serve`` process for the reliability benchmarks: start it, read every process's RSS, stop it.

Started as an operator would (``python -m hetserve.cli serve``), in a process
group of its own; every process hetserve starts lives in the session of its
supervised server (``hetserve/supervise.py``), which is how they are found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.ingress import free_port  # noqa: E402
from hetserve.supervise import end_session, session_processes  # noqa: E402


def role(p: psutil.Process) -> str:
    """What a process is, from the title Ray and vLLM give it."""
    try:
        title = " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return "gone"
    for marker, name in (
        ("EngineCore", "vllm-engine-core"), ("ServeReplica:hetserve:gateway", "gateway"),
        ("ProxyActor", "serve-proxy"), ("ServeController", "serve-controller"), ("raylet", "raylet"),
        ("gcs_server", "gcs"), ("dashboard", "ray-dashboard"), ("log_monitor", "ray-log-monitor"),
        ("monitor.py", "ray-monitor"), ("hetserve.cli", "hetserve-serve"),
    ):
        if marker in title:
            return name
    if "ServeReplica:hetserve:" in title:
        return "pool:" + title.split("ServeReplica:hetserve:", 1)[1].split()[0]
    return p.name()


@dataclass
class FleetServer:
    proc: subprocess.Popen
    url: str
    log: Path

    def server_pid(self) -> int:
        return psutil.Process(self.proc.pid).children()[0].pid

    def processes(self) -> list[psutil.Process]:
        procs = [psutil.Process(self.proc.pid)]
        with contextlib.suppress(psutil.Error, IndexError):
            procs += session_processes(self.server_pid())
        return procs

    def rss(self) -> dict[str, int]:
        """RSS in bytes per process, keyed ``role#pid`` (a restarted replica is a new key)."""
        out = {}
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                out[f"{role(p)}#{p.pid}"] = p.memory_info().rss
        return out

    def stop(self, timeout_s: float = 120) -> dict:
        """SIGTERM the process group (a service manager's stop); report how long it took and what was left."""
        procs = self.processes()
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        _, alive = psutil.wait_procs(procs, timeout=10)
        left = len(alive)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(psutil.Error, IndexError):
            end_session(procs[1].pid if len(procs) > 1 else -1, grace_s=2)
        return {"stop_s": round(time.monotonic() - t0, 2), "returncode": self.proc.returncode, "left_running": left}


def start(fleet: dict | None, out_dir: Path, probe_model: str, timeout_s: float = 300) -> FleetServer:
    """Start ``hetserve serve`` (``fleet`` None: the embedded default fleet) on a free port; wait for ``probe_model``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # A SIGTERM to the benchmark (timeout, Ctrl-C's cousin) unwinds it, so its finally stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    cmd = [sys.executable, "-m", "hetserve.cli", "serve", "--port", str(port), "--num-cpus", "2"]
    if fleet is not None:
        path = out_dir / "fleet.yaml"
        path.write_text(yaml.safe_dump(fleet))
        cmd += ["--fleet", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    log = out_dir / "serve.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    server = FleetServer(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hetserve serve exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(f"{server.url}/v1/completions", json={"model": probe_model, "prompt": "hi", "max_tokens": 2},
                           timeout=30)
            if r.status_code == 200:
                return server
        time.sleep(1)
    server.stop()
    raise RuntimeError(f"hetserve serve did not answer within {timeout_s:.0f} s; see {log}")
