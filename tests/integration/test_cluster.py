"""A Ray cluster of a head and two worker raylets on this machine, each worker
holding a different custom resource: `hetserve serve --address` places each
pool on the node holding its resource and serves across nodes; a wrong token
is refused with one line; the Serve config `hetserve config` writes deploys
with `serve deploy`.

Marked ``cluster`` (run alone: ``pytest -m cluster``). It runs its own
``ray start`` processes beside any other Ray cluster and ends only those.
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
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "m"
FLEET = {
    "routing": {"policy": "least-load"},
    "pools": [
        {"name": name, "hardware": hw, "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
         "engine_args": {"time_scale": 20}, "resources": {resource: 1}}
        for name, hw, resource in (("h100", "h100", "h100"), ("rngd", "rngd", "FURIOSA"))
    ],
}  # fmt: skip


def _ray(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / "ray"), *args], env=env, check=True, capture_output=True, timeout=120)


def _python(code: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                          timeout=120).stdout  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("no ray command beside this Python")
    temp = tempfile.mkdtemp(prefix="hsc-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    port, dashboard = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    _ray("start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp}", "--include-dashboard=true",
         f"--dashboard-port={dashboard}", "--object-store-memory=100000000", env=env)  # fmt: skip
    try:
        for resources in ({"h100": 1}, {"FURIOSA": 1}):
            _ray("start", f"--address={address}", "--num-cpus=1", f"--resources={json.dumps(resources)}",
                 "--object-store-memory=80000000", env=env)  # fmt: skip
        yield {"address": address, "dashboard": f"http://127.0.0.1:{dashboard}", "env": env,
               "dir": tmp_path_factory.mktemp("cluster")}  # fmt: skip
    finally:
        _stop_cluster((temp, address))
        shutil.rmtree(temp, ignore_errors=True)


def _stop_cluster(marks: tuple[str, ...]) -> None:
    """End this cluster's processes by id: those whose command line names its temp dir or GCS address,
    and their children (agents retitle themselves ``ray::DashboardAgent``), found before any is ended.

    Not `ray stop`, which ends every Ray process on the machine, the session's own cluster included.
    """
    parents, matched = {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if any(mark in cmdline for mark in marks):
            matched.add(int(proc.name))
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in matched} - matched
        matched |= children
        grown = bool(children)
    pids = sorted(matched)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.5)


def _wait_ok(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not become healthy in {seconds:.0f} s")


def _complete(url: str, n: int, pin: str | None = None) -> list[str]:
    """``pin``: the pool the gateway must use (its x-hetserve-pool-pin header)."""
    pools = []
    headers = {"x-hetserve-pool-pin": pin} if pin else {}
    for i in range(n):
        r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": f"hello {i}", "max_tokens": 4},
                       headers=headers, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        pools.append(r.headers.get("x-hetserve-pool"))
    return pools


PLACEMENT = """
import json, ray
from ray.util.state import list_actors
ray.init(address="{address}", logging_level="ERROR")
nodes = {{n["NodeID"]: sorted(k for k in n["Resources"] if k in ("h100", "FURIOSA")) for n in ray.nodes() if n["Alive"]}}
replicas = [a for a in list_actors(address="{address}", filters=[("state", "=", "ALIVE")], limit=1000) if a.class_name.startswith("ServeReplica:hetserve:") and not a.class_name.endswith(":gateway")]
print(json.dumps([[a.class_name.rsplit(":", 1)[1], nodes.get(a.node_id)] for a in replicas]))
"""


def _placement(cluster, attempts: int = 6) -> str:
    """The state API answers through the dashboard, which a busy machine may not have up yet: retry.
    Its address is given: another Ray instance (the suite's own) may run beside this cluster."""
    for attempt in range(attempts):
        done = subprocess.run([sys.executable, "-c", PLACEMENT.format(address=cluster["address"])], env=cluster["env"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode == 0:
            return done.stdout
        time.sleep(5)
    raise AssertionError(f"the state API did not answer after {attempts} tries: {done.stderr[-2000:]}")


def test_pools_land_on_the_nodes_holding_their_resources_and_serve(cluster):
    fleet = cluster["dir"] / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(FLEET))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(BIN / "hetserve"), "serve", "--fleet", str(fleet), "--address", cluster["address"], "--port", str(port)],
        env=cluster["env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_ok(url, 180)
        assert _complete(url, 5, pin="h100") + _complete(url, 5, pin="rngd") == ["h100"] * 5 + ["rngd"] * 5
        placed = json.loads(_placement(cluster))
        assert sorted(placed) == [["h100", ["h100"]], ["rngd", ["FURIOSA"]]]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=120)
    assert "hetserve: serving" in out


def test_a_wrong_token_is_refused_in_one_line(cluster):
    env = {**cluster["env"], "RAY_AUTH_TOKEN": "not-the-clusters-token"}
    done = subprocess.run([str(BIN / "hetserve"), "serve", "--address", cluster["address"], "--port", str(free_port())],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("hetserve: did not start:")]
    assert "cannot join" in line and "RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN" in line


def test_serve_deploy_accepts_the_generated_config(cluster):
    fleet, config = cluster["dir"] / "fleet.yaml", cluster["dir"] / "serve.yaml"
    fleet.write_text(yaml.safe_dump(FLEET))
    port = free_port()
    subprocess.run([str(BIN / "hetserve"), "config", "--fleet", str(fleet), "--out", str(config),
                    "--host", "127.0.0.1", "--port", str(port)], check=True, env=cluster["env"], cwd=ROOT)  # fmt: skip
    serve = [str(BIN / "serve")]
    env = cluster["env"]
    # Serve's HTTP options are fixed while Serve runs: start it afresh with this config's.
    subprocess.run([*serve, "shutdown", "-y", "--address", cluster["dashboard"]], env=env, capture_output=True, timeout=120)
    subprocess.run([*serve, "deploy", str(config), "--address", cluster["dashboard"]], check=True, env=env, cwd=ROOT,
                   capture_output=True, timeout=120)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ok(url, 180)
        assert set(_complete(url, 4)) <= {"h100", "rngd"}
        status = yaml.safe_load(subprocess.run([*serve, "status", "--address", cluster["dashboard"]], env=env,
                                               capture_output=True, text=True, timeout=60, check=True).stdout)  # fmt: skip
        app = status["applications"]["hetserve"]
        assert app["status"] == "RUNNING"
        assert set(app["deployments"]) == {"gateway", "h100", "rngd"}
    finally:
        subprocess.run([*serve, "shutdown", "-y", "--address", cluster["dashboard"]], env=env, capture_output=True,
                       timeout=120)  # fmt: skip
