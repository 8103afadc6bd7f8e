"""A ``hetserve serve`` process for tests that signal it: start, find its processes, end it."""

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

from hetserve.supervise import end_session, session_processes
from deploy.ingress import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    url: str
    log: Path

    @property
    def server_pid(self) -> int:
        """The supervised server: the session leader of everything hetserve started."""
        return psutil.Process(self.proc.pid).children()[0].pid

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(self.proc.pid), *session_processes(self.server_pid)]

    def find(self, text: str) -> list[psutil.Process]:
        """Processes of the server whose command line contains ``text`` (Ray sets it to the actor's name)."""
        found = []
        for p in session_processes(self.server_pid):
            with contextlib.suppress(psutil.Error):
                if text in " ".join(p.cmdline()) or text in p.name():
                    found.append(p)
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(fleet: dict, tmp_path: Path, ready_model: str, timeout_s: float = 240) -> ServeProcess:
    """Start ``hetserve serve`` for ``fleet`` in a process group of its own; return once ``ready_model`` answers."""
    port = free_port()
    fleet = {**fleet, "gateway": {**fleet.get("gateway", {}), "port": port}}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hetserve.cli", "serve", "--fleet", str(path), "--num-cpus", "2"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )
    server = ServeProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hetserve serve exited with {proc.returncode}:\n{server.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(f"{server.url}/v1/completions", json={"model": ready_model, "prompt": "hi", "max_tokens": 2},
                           timeout=30)
            if r.status_code == 200:
                return server
        time.sleep(1)
    stop(server)
    raise RuntimeError(f"hetserve serve did not answer within {timeout_s:.0f} s:\n{server.output()[-3000:]}")


def stop(server: ServeProcess) -> None:
    """Whatever a test left running: the supervisor's group, then the server's session."""
    with contextlib.suppress(psutil.Error, IndexError):
        sid = server.server_pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        end_session(sid, grace_s=2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
