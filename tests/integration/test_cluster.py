"""A Ray cluster of a head and two worker raylets on this machine, each worker
holding a different custom resource (``bench/_cluster.py``): a wrong token is
refused with one line; the Serve config `hetserve config` writes deploys with
`serve deploy`, and a changed one reaches the running gateway (its routing
policy), then a pool's replicas change, a pool is added and removed, each by
`serve deploy` under load, without a dropped request; `hetserve serve --address` places each
pool on the node holding its resource (the gateway on the head) and serves
across nodes; a worker node killed under load takes its pool down, no request
that had not started streaming is lost, and the pool serves again once the
node is back.

Marked ``cluster`` (run alone: ``pytest -m cluster``). It runs its own
``ray start`` processes beside any other Ray cluster and ends only those.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bench import node_loss
from bench._cluster import BIN
from deploy.ingress import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]
MODEL = node_loss.MODEL
# Fast polls: the node-loss test waits for the gateway to see the pool fall and come back.
FLEET = node_loss.fleet(gateway={"poll_interval_s": 0.5})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("no ray command beside this Python")
    running, workers = node_loss.start_cluster()
    try:
        yield {"address": running.address, "dashboard": running.dashboard, "env": running.env,
               "dir": tmp_path_factory.mktemp("cluster"), "cluster": running, "workers": workers}  # fmt: skip
    finally:
        running.stop()


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
nodes = {{n["NodeID"]: sorted(k for k in n["Resources"] if k in ("h100", "FURIOSA", "hetserve_gateway")) for n in ray.nodes() if n["Alive"]}}
replicas = [a for a in list_actors(address="{address}", filters=[("state", "=", "ALIVE")], limit=1000) if a.class_name.startswith("ServeReplica:hetserve:")]
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


def _pools(url: str) -> dict:
    return {p["name"]: p for p in httpx.get(f"{url}/v1/fleet", params={"profiles": "false"}, timeout=10).json()["pools"]}


def _requests_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("hetserve_requests_total{"))


def _policy(url: str) -> str:
    return httpx.get(f"{url}/v1/fleet", params={"profiles": "false"}, timeout=10).json()["policy"]


def test_a_wrong_token_is_refused_in_one_line(cluster):
    env = {**cluster["env"], "RAY_AUTH_TOKEN": "not-the-clusters-token"}
    done = subprocess.run([str(BIN / "hetserve"), "serve", "--address", cluster["address"], "--port", str(free_port())],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("hetserve: did not start:")]
    assert "cannot join" in line and "RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN" in line


def test_serve_deploy_accepts_the_generated_config_and_changes_reach_the_running_app_without_a_dropped_request(
    cluster,
):
    fleet, config = cluster["dir"] / "fleet.yaml", cluster["dir"] / "serve.yaml"
    fleet.write_text(yaml.safe_dump(FLEET))
    port = free_port()
    subprocess.run([str(BIN / "hetserve"), "config", "--fleet", str(fleet), "--out", str(config),
                    "--host", "127.0.0.1", "--port", str(port)], check=True, env=cluster["env"], cwd=ROOT)  # fmt: skip
    serve = [str(BIN / "serve")]
    env = cluster["env"]

    def deploy() -> None:
        subprocess.run([*serve, "deploy", str(config), "--address", cluster["dashboard"]], check=True, env=env,
                       cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip

    # Serve's HTTP options are fixed while Serve runs: start it afresh with this config's.
    subprocess.run([*serve, "shutdown", "-y", "--address", cluster["dashboard"]], env=env, capture_output=True, timeout=120)
    deploy()
    try:
        url = f"http://127.0.0.1:{port}"
        node_loss.wait_ready(url, 180)
        assert set(_complete(url, 4)) <= {"h100", "rngd"}
        status = yaml.safe_load(subprocess.run([*serve, "status", "--address", cluster["dashboard"]], env=env,
                                               capture_output=True, text=True, timeout=60, check=True).stdout)  # fmt: skip
        app = status["applications"]["hetserve"]
        assert app["status"] == "RUNNING"
        assert set(app["deployments"]) == {"gateway", "h100", "rngd"}

        # Edit the gateway's user_config and deploy again, with requests streaming all along.
        edited = yaml.safe_load(config.read_text())
        (gateway,) = [d for d in edited["applications"][0]["deployments"] if d["name"] == "gateway"]
        assert _policy(url) == gateway["user_config"]["routing"]["policy"] == "least-load"
        gateway["user_config"]["routing"] = {"policy": "round-robin"}
        config.write_text(yaml.safe_dump(edited, sort_keys=False))
        before = _requests_total(url)
        with node_loss.Load(url, clients=2, max_tokens=4) as load:
            deploy()
            deadline = time.monotonic() + 120
            while _policy(url) != "round-robin":
                assert time.monotonic() < deadline, "the new policy did not reach the gateway"
                time.sleep(0.5)
            served = len(load.outcomes)
            while len(load.outcomes) < served + 4:  # requests under the new policy too
                assert time.monotonic() < deadline + 60, "requests stopped flowing"
                time.sleep(0.2)
        outcomes = load.stop()
        assert outcomes and all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        # The same gateway replica, reconfigured rather than restarted: its counters carried on.
        assert _requests_total(url) >= before + len(outcomes)

        # Pool changes, each an edited fleet written out by `hetserve config` and deployed under load.
        def redeploy(edit, settled) -> None:
            changed = json.loads(json.dumps(FLEET))
            edit(changed)
            fleet.write_text(yaml.safe_dump(changed))
            subprocess.run([str(BIN / "hetserve"), "config", "--fleet", str(fleet), "--out", str(config), "--host",
                            "127.0.0.1", "--port", str(port)], check=True, env=env, cwd=ROOT)  # fmt: skip
            with node_loss.Load(url, clients=2, max_tokens=4) as load:
                deploy()
                deadline = time.monotonic() + 180
                while not settled(_pools(url)):
                    assert time.monotonic() < deadline, f"the change did not reach the gateway: {_pools(url)}"
                    time.sleep(0.5)
                served = len(load.outcomes)
                while len(load.outcomes) < served + 4:
                    assert time.monotonic() < deadline + 60, "requests stopped flowing"
                    time.sleep(0.2)
            outcomes = load.stop()
            assert outcomes and all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]

        spare = {**FLEET["pools"][0], "name": "spare", "resources": {node_loss.GATEWAY_RESOURCE: 0.001}}

        def two_h100_replicas(f: dict) -> None:
            f["pools"][0].update(replicas=2, resources={"h100": 0.5})

        redeploy(two_h100_replicas, lambda pools: pools["h100"]["replicas"] == 2 and pools["h100"]["ready"])
        redeploy(lambda f: f["pools"].append(spare), lambda pools: pools.get("spare", {}).get("ready"))
        assert set(_complete(url, 2, pin="spare")) == {"spare"}
        redeploy(lambda f: None, lambda pools: "spare" not in pools and pools["h100"]["replicas"] == 1)
    finally:
        subprocess.run([*serve, "shutdown", "-y", "--address", cluster["dashboard"]], env=env, capture_output=True,
                       timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def served(cluster):
    """`hetserve serve --address` on the cluster, the URL once every pool answers."""
    fleet = cluster["dir"] / "served" / "fleet.yaml"
    fleet.parent.mkdir()
    fleet.write_text(yaml.safe_dump(FLEET))
    port = free_port()
    proc = node_loss.serve(cluster["cluster"], fleet, port)
    try:
        url = f"http://127.0.0.1:{port}"
        node_loss.wait_ready(url, 240)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "hetserve: serving" in (fleet.parent / "serve.log").read_text()


def test_pools_land_on_the_nodes_holding_their_resources_and_serve(cluster, served):
    assert _complete(served, 5, pin="h100") + _complete(served, 5, pin="rngd") == ["h100"] * 5 + ["rngd"] * 5
    placed = json.loads(_placement(cluster))
    assert sorted(placed) == [["gateway", ["hetserve_gateway"]], ["h100", ["h100"]], ["rngd", ["FURIOSA"]]]


def test_a_lost_node_takes_its_pool_down_loses_no_request_not_yet_streaming_and_serves_again_when_back(
    cluster, served
):
    seen = {}

    def while_down(url: str) -> None:
        seen["pools"] = {p["name"]: p for p in httpx.get(f"{url}/v1/fleet", params={"profiles": "false"}).json()["pools"]}
        deadline = time.monotonic() + 30  # /metrics is refreshed at the end of each round of polls
        while 'hetserve_pool_ready{pool="rngd"} 0.0' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "hetserve_pool_ready did not fall"
            time.sleep(0.5)
        seen["served"] = _complete(url, 3)

    with node_loss.Load(served, clients=3) as load:
        rep = node_loss.lose_and_recover(cluster["cluster"], cluster["workers"]["rngd"], served, load, 1.0, while_down)
    cluster["workers"]["rngd"] = rep["worker"]
    assert rep["failed_before_first_byte"] == 0, rep["errors"]
    assert rep["ok"] > 0
    down, other = seen["pools"]["rngd"], seen["pools"]["h100"]
    assert (down["healthy"], down["ready"], other["healthy"]) == (False, False, True) and down["last_error"]
    assert seen["served"] == ["h100"] * 3
    # lose_and_recover waited for the pool to be healthy and serve a pinned request once the node was back.
    assert _complete(served, 2, pin="rngd") == ["rngd"] * 2
