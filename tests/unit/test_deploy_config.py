"""`hetserve config`: Serve's own schema accepts the config; the RayService has KubeRay's documented fields."""

from __future__ import annotations

import json

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deploy import kuberay
from deploy.cli import config_main
from deploy.serve_config import GATEWAY_DEPLOYMENT, IMPORT_PATH
from workers.serve_env import REPLICA_ENV
from fleet.config import GATEWAY_HEADROOM, load_fleet, parse_fleet

POOL = {"hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": ["m"]}
MIXED = {
    "gateway": {"port": 8100, "max_ongoing_requests": 500},
    "pools": [
        {**POOL, "name": "gpu", "replicas": 2, "max_ongoing_requests": 128, "resources": {"GPU": 1, "CPU": 2}},
        {**POOL, "name": "rngd", "hardware": "rngd", "resources": {"FURIOSA": 1}, "env": {"A": "1"}},
        {**POOL, "name": "atom", "hardware": "atom", "resources": {"RBLN": 2}, "engine_args": {"max_batch": 16}},
    ],
}


def _write(tmp_path, data) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_serve_config_passes_serves_schema(tmp_path):
    out = tmp_path / "serve.yaml"
    assert config_main(["--fleet", _write(tmp_path, MIXED), "--out", str(out)]) == 0
    schema = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    assert schema.http_options.port == 8100 and schema.http_options.host == "0.0.0.0"
    (app,) = schema.applications
    assert app.import_path == IMPORT_PATH and app.route_prefix == "/"
    deployments = {d.name: d for d in app.deployments}
    assert list(deployments) == [GATEWAY_DEPLOYMENT, "gpu", "rngd", "atom"]
    assert deployments[GATEWAY_DEPLOYMENT].max_ongoing_requests == 500 + GATEWAY_HEADROOM  # the gateway 429s past 500
    gpu, rngd, atom = deployments["gpu"], deployments["rngd"], deployments["atom"]
    assert (gpu.num_replicas, gpu.max_ongoing_requests) == (2, 128)
    assert (gpu.ray_actor_options.num_gpus, gpu.ray_actor_options.num_cpus) == (1, 2)
    assert rngd.ray_actor_options.resources == {"FURIOSA": 1}
    assert rngd.ray_actor_options.runtime_env == {"env_vars": {**REPLICA_ENV, "A": "1"}}
    assert deployments[GATEWAY_DEPLOYMENT].ray_actor_options.runtime_env == {"env_vars": REPLICA_ENV}
    assert atom.ray_actor_options.resources == {"RBLN": 2}


def test_inline_fleet_in_args_round_trips_to_the_same_fleet(tmp_path):
    fleet, _ = load_fleet(_write(tmp_path, MIXED))
    out = tmp_path / "serve.yaml"
    config_main(["--fleet", _write(tmp_path, MIXED), "--out", str(out)])
    (app,) = yaml.safe_load(out.read_text())["applications"]
    assert parse_fleet(app["args"]["fleet"]) == fleet


def test_fleet_path_mode_refers_to_the_file(tmp_path, capsys):
    assert config_main(["--fleet", _write(tmp_path, MIXED), "--fleet-path", "/etc/hetserve/fleet.yaml"]) == 0
    (app,) = yaml.safe_load(capsys.readouterr().out)["applications"]
    assert app["args"] == {"fleet": "/etc/hetserve/fleet.yaml"}


def test_builder_builds_the_deployments_the_config_names(tmp_path):
    """`serve run gateway.app:build fleet=FILE`: Serve imports this path and calls it with the args."""
    from ray.serve._private.utils import import_attr  # what `serve run` and `serve deploy` use

    build = import_attr(IMPORT_PATH)
    app = build({"fleet": _write(tmp_path, MIXED)})
    from gateway.app import Gateway

    assert Gateway.name == GATEWAY_DEPLOYMENT
    assert type(app).__name__ == "Application"
    inline = build({"fleet": MIXED})
    assert type(inline).__name__ == "Application"


def test_builder_rejects_unknown_args_and_bad_fleets():
    from fleet.config import FleetConfigError
    from gateway.build import build

    with pytest.raises(FleetConfigError, match="application args"):
        build({"flet": "x.yaml"})
    with pytest.raises(FleetConfigError, match=r"args.fleet: pools.0.engine_args.max_batch"):
        build({"fleet": {"pools": [{**POOL, "name": "a", "engine_args": {"max_batch": 0}}]}})


def test_invalid_fleet_exits_2(tmp_path, capsys):
    assert config_main(["--fleet", _write(tmp_path, {"pools": []})]) == 2
    assert "invalid fleet" in capsys.readouterr().err


# -- KubeRay -------------------------------------------------------------------------------


def _rayservice(tmp_path, capsys, data=MIXED):
    assert config_main(["--kuberay", "--fleet", _write(tmp_path, data), "--image", "reg/hetserve:1"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def _start_resources(params: dict) -> dict:
    raw = params["resources"]
    assert raw.startswith('"') and raw.endswith('"')  # KubeRay's documented quoting
    return json.loads(raw[1:-1].replace('\\"', '"'))


def test_rayservice_has_kuberays_documented_fields(tmp_path, capsys):
    doc = _rayservice(tmp_path, capsys)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert doc["metadata"]["name"] == "hetserve"
    spec = doc["spec"]
    assert isinstance(spec["serveConfigV2"], str)
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"].startswith("2.60")
    head = cluster["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # KubeRay takes strings only
    assert _start_resources(head["rayStartParams"]) == {kuberay.GATEWAY_RESOURCE: 1}
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] == "reg/hetserve:1"
    assert {"name": "serve", "containerPort": 8000} in head_container["ports"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert list(groups) == ["gpu", "rngd", "atom"]
    for group in groups.values():
        assert set(group) >= {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"}
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] == "reg/hetserve:1"


def test_worker_groups_ask_kubernetes_for_the_device_and_ray_for_the_resource(tmp_path, capsys):
    groups = {g["groupName"]: g for g in _rayservice(tmp_path, capsys)["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    gpu, rngd, atom = groups["gpu"], groups["rngd"], groups["atom"]
    assert gpu["replicas"] == 2
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu["rayStartParams"]["num-cpus"] == "2"
    assert "resources" not in gpu["rayStartParams"]  # KubeRay derives --num-gpus from the GPU limit
    assert _start_resources(rngd["rayStartParams"]) == {"FURIOSA": 1}
    assert rngd["template"]["spec"]["containers"][0]["resources"]["limits"]["furiosa.ai/rngd"] == "1"
    assert rngd["template"]["spec"]["nodeSelector"] == {"furiosa.ai/npu.family": "rngd"}
    assert _start_resources(atom["rayStartParams"]) == {"RBLN": 2}
    assert atom["template"]["spec"]["containers"][0]["resources"]["limits"]["rebellions.ai/ATOM"] == "2"


def test_serve_config_inside_the_rayservice_pins_the_gateway_to_the_head(tmp_path, capsys):
    doc = _rayservice(tmp_path, capsys)
    config = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    gateway = next(d for d in config.applications[0].deployments if d.name == GATEWAY_DEPLOYMENT)
    assert set(gateway.ray_actor_options.resources) == {kuberay.GATEWAY_RESOURCE}
    assert config.http_options.port == 8000


def test_docs_example_is_what_the_command_writes_for_the_example_fleet(capsys):
    """docs/kuberay-rayservice.yaml is generated, not hand-edited: regenerate it when this fails."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert config_main(["--kuberay", "--fleet", str(root / "docs" / "kuberay-fleet.yaml")]) == 0
    assert capsys.readouterr().out == (root / "docs" / "kuberay-rayservice.yaml").read_text()


def test_the_gateways_user_config_carries_routing_and_live_settings_and_applies_back(tmp_path):
    """What `serve deploy` of an edited `user_config` hands the running gateway's `reconfigure`."""
    from fleet.live import apply_live

    fleet, _ = load_fleet(_write(tmp_path, {**MIXED, "routing": {"policy": "least-load"}}))
    out = tmp_path / "serve.yaml"
    config_main(["--fleet", _write(tmp_path, {**MIXED, "routing": {"policy": "least-load"}}), "--out", str(out)])
    schema = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    gateway = next(d for d in schema.applications[0].deployments if d.name == GATEWAY_DEPLOYMENT)
    user_config = gateway.user_config
    assert user_config["routing"] == {"policy": "least-load"}
    assert apply_live(fleet, user_config) == fleet
    user_config["routing"] = {"policy": "round-robin"}
    user_config["gateway"]["poll_timeout_s"] = 1.5
    changed = apply_live(fleet, user_config)
    assert (changed.routing.policy, changed.gateway.poll_timeout_s) == ("round-robin", 1.5)
    assert changed.pools == fleet.pools and changed.gateway.port == fleet.gateway.port


@pytest.mark.parametrize("user_config, key", [
    ({"gateway": {"port": 9000}}, "user_config.gateway.port"),
    ({"routing": {"policy": "fastest-please"}}, "user_config: routing.policy"),
    ({"pools": []}, "user_config.pools"),
])  # fmt: skip
def test_a_user_config_change_the_gateway_cannot_take_live_is_refused_naming_the_key(user_config, key):
    from fleet.config import FleetConfigError
    from fleet.live import apply_live

    with pytest.raises(FleetConfigError, match=key.replace(".", r"\.")):
        apply_live(parse_fleet(MIXED), user_config)


def test_the_gateway_is_pinned_where_the_fleet_says_and_proxies_follow_the_fleet(tmp_path, capsys):
    data = {**MIXED, "gateway": {**MIXED["gateway"], "resources": {"head": 1}, "proxy_location": "HeadOnly"}}
    assert config_main(["--fleet", _write(tmp_path, data)]) == 0
    schema = ServeDeploySchema.model_validate(yaml.safe_load(capsys.readouterr().out))
    gateway = next(d for d in schema.applications[0].deployments if d.name == GATEWAY_DEPLOYMENT)
    assert gateway.ray_actor_options.resources == {"head": 1} and schema.proxy_location == "HeadOnly"


def test_a_local_cluster_takes_free_ports_for_every_listener_ray_fixes(monkeypatch):
    """A second Serve instance on the host must not share the first one's HAProxy
    listeners or fallback proxy (whose port would hand its requests to the other cluster)."""
    import os

    from deploy.ingress import LISTENER_PORT_VARS, local_cluster_env

    for var in (*LISTENER_PORT_VARS, "RAY_worker_niceness"):
        monkeypatch.delenv(var, raising=False)
    assert {"RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_HAPROXY_STATS_PORT"} <= set(LISTENER_PORT_VARS)
    with local_cluster_env():
        ports = [int(os.environ[var]) for var in LISTENER_PORT_VARS]
        assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert os.environ["RAY_worker_niceness"] == "0"  # Ray's workers (the service) at the default priority
    assert len(set(ports)) == len(ports) and all(p not in (8404, 9101, 8500, 9500) for p in ports)
    assert not any(var in os.environ for var in (*LISTENER_PORT_VARS, "RAY_worker_niceness"))  # restored
    monkeypatch.setenv("RAY_worker_niceness", "15")  # the operator's choice stands
    with local_cluster_env():
        assert os.environ["RAY_worker_niceness"] == "15"


def test_replicas_run_on_serves_loop_at_niceness_0_unless_the_pool_or_the_operator_says_otherwise(monkeypatch):
    from workers.serve_env import with_replica_env

    monkeypatch.delenv("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", raising=False)
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    assert REPLICA_ENV == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_worker_niceness": "0"}
    assert with_replica_env({"num_cpus": 1}) == {"num_cpus": 1, "runtime_env": {"env_vars": REPLICA_ENV}}
    pool_says = {"runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1", "RAY_worker_niceness": "5"},
                                 "pip": ["x"]}}  # fmt: skip
    assert with_replica_env(pool_says)["runtime_env"] == pool_says["runtime_env"]
    monkeypatch.setenv("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "1")
    monkeypatch.setenv("RAY_worker_niceness", "15")
    assert with_replica_env({})["runtime_env"]["env_vars"] == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
                                                               "RAY_worker_niceness": "15"}
