"""A Ray cluster of several raylets on one machine, for the cluster test and the node-loss benchmark.

A head (``ray start --head``) and worker raylets, each with its own custom
resources and token authentication on. Each worker runs as ``ray start
--block`` in its own process tree, so it can be lost as a host is (every
process of that node killed at once, :meth:`LocalCluster.lose`) and come back
with the same resources (:meth:`LocalCluster.add_worker`). Everything ends by
process id: never ``ray stop``, which ends every Ray process on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.ingress import free_port  # noqa: E402


@dataclass
class Worker:
    resources: dict[str, float]
    proc: subprocess.Popen


@dataclass
class LocalCluster:
    head_resources: dict[str, float] = field(default_factory=dict)
    address: str = ""
    dashboard: str = ""
    env: dict[str, str] = field(default_factory=dict)
    temp: str = ""
    workers: list[Worker] = field(default_factory=list)

    def start(self, attempts: int = 2) -> "LocalCluster":
        """Start the head; a busy machine can make ``ray start`` time out, so it tries again afresh."""
        for attempt in range(attempts):
            try:
                return self._start_head()
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        return self

    def _start_head(self) -> "LocalCluster":
        # Short: Ray's socket paths have a length limit.
        self.temp = tempfile.mkdtemp(prefix="hsc-", dir="/tmp")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
        self.env.pop("RAY_ADDRESS", None)
        port, dashboard = free_port(), free_port()
        self.address, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
        args = ["start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={self.temp}",
                "--include-dashboard=true", f"--dashboard-port={dashboard}", "--object-store-memory=100000000"]  # fmt: skip
        if self.head_resources:
            args.append(f"--resources={json.dumps(self.head_resources)}")
        try:
            done = subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0:
            self.stop()  # what it started before failing
            tail = (done.stdout + done.stderr)[-3000:] if done is not None else "timed out"
            raise RuntimeError(f"ray start --head failed: {tail}")
        return self

    def add_worker(self, resources: dict[str, float], timeout_s: float = 120) -> Worker:
        """Start a worker raylet holding ``resources``; returns once Ray says it started."""
        log = Path(self.temp) / f"worker-{len(self.workers)}-{time.monotonic_ns()}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(BIN / "ray"), "start", f"--address={self.address}", "--num-cpus=1",
                 f"--resources={json.dumps(resources)}", "--object-store-memory=80000000", "--block"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        # `ray start --block` prints this once the node's processes run, then blocks.
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                kill_tree([proc.pid], signals=(signal.SIGKILL,))
                raise RuntimeError(f"worker raylet {resources} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        worker = Worker(resources, proc)
        self.workers.append(worker)
        return worker

    def lose(self, worker: Worker) -> None:
        """Kill every process of ``worker``'s node at once (SIGKILL), as a host that died."""
        kill_tree([worker.proc.pid], signals=(signal.SIGKILL,))
        worker.proc.wait(timeout=30)
        self.workers.remove(worker)

    def stop(self) -> None:
        """End this cluster's processes: those whose command line names its temp dir or GCS address, the
        workers' trees, and their children (agents retitle themselves ``ray::DashboardAgent``)."""
        kill_tree([w.proc.pid for w in self.workers], marks=(self.temp, self.address))
        self.workers.clear()
        shutil.rmtree(self.temp, ignore_errors=True)


def kill_tree(roots: list[int], marks: tuple[str, ...] = (), signals=(signal.SIGTERM, signal.SIGKILL)) -> None:
    """Signal ``roots``, the processes whose command line contains one of ``marks``, and all their
    descendants, all found before any is signalled."""
    parents, matched = {}, set(roots)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if marks and any(mark and mark in cmdline for mark in marks):
            matched.add(int(proc.name))
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in matched} - matched
        matched |= children
        grown = bool(children)
    pids = sorted(matched)
    for sig in signals:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while sig != signal.SIGKILL and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.5)
