"""A KubeRay ``RayService`` manifest for a fleet.

The head group runs Serve's controller, its proxy and the gateway (pinned by
a custom resource only the head holds); each pool gets a worker group of
``replicas`` pods (an autoscaled pool: from its ``min_replicas`` to its
``max_replicas``, KubeRay's in-tree autoscaler on), one pool replica per pod, whose container asks Kubernetes
for the pool's device (``nvidia.com/gpu``, ``furiosa.ai/rngd``,
``rebellions.ai/ATOM``) and whose ``rayStartParams`` declare the pool's Ray
resources, so Serve places each replica on its own group. Node selectors use
the labels the vendors' feature-discovery daemons set; an operator with other
labels edits the generated file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from deploy.ingress import RAY_ENV
from deploy.serve_config import serve_config
from fleet.config import FleetConfig
from workers.serve_env import WORKER_PRIORITY_ENV
from workers.spec import PoolSpec

API_VERSION = "ray.io/v1"
RAY_VERSION = "2.60.0"
DEFAULT_IMAGE = "hetserve:0.1.0"  # rayproject/ray:2.60.0-py311 with hetserve installed (docs/operations.md)
GATEWAY_RESOURCE = "hetserve_gateway"


@dataclass(frozen=True)
class Device:
    """How Kubernetes offers a Ray accelerator resource: the pod's limit name and the node label to select."""

    k8s_resource: str
    node_selector: dict[str, str]


#: Ray resource -> Kubernetes device plugin resource and feature-discovery label.
DEVICES = {
    "GPU": Device("nvidia.com/gpu", {"nvidia.com/gpu.present": "true"}),
    "FURIOSA": Device("furiosa.ai/rngd", {"furiosa.ai/npu.family": "rngd"}),
    "RBLN": Device("rebellions.ai/ATOM", {"feature.node.kubernetes.io/pci-1eff.present": "true"}),
}


def ray_start_resources(resources: dict[str, float]) -> str:
    """``rayStartParams.resources``: a JSON object wrapped in quotes, as KubeRay passes it to ``ray start``."""
    return '"' + json.dumps(resources, sort_keys=True).replace('"', '\\"') + '"'


def _container(name: str, image: str, limits: dict[str, Any], ports: list[dict] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in {**RAY_ENV, **WORKER_PRIORITY_ENV}.items()],
        "resources": {"limits": limits, "requests": {k: v for k, v in limits.items() if k in ("cpu", "memory")}},
    }
    if ports:
        container["ports"] = ports
    return container


def head_group(image: str) -> dict[str, Any]:
    ports = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
        {"containerPort": 8000, "name": "serve"},
    ]
    return {
        "rayStartParams": {"dashboard-host": "0.0.0.0", "resources": ray_start_resources({GATEWAY_RESOURCE: 1})},
        "template": {"spec": {"containers": [_container("ray-head", image, {"cpu": "4", "memory": "8Gi"}, ports)]}},
    }


def worker_group(pool: PoolSpec, image: str) -> dict[str, Any]:
    """One pod per pool replica, holding exactly what one replica asks for (plus a CPU for Ray itself)."""
    cpus = pool.resources.get("CPU", 0)
    limits: dict[str, Any] = {"cpu": str(max(1, math.ceil(cpus) + 1)), "memory": "16Gi"}
    node_selector: dict[str, str] = {}
    custom: dict[str, float] = {}
    for name, amount in pool.resources.items():
        if name == "CPU" or not amount:
            continue
        device = DEVICES.get(name)
        if device is not None:
            limits[device.k8s_resource] = str(math.ceil(amount))
            node_selector.update(device.node_selector)
        if name != "GPU":  # KubeRay turns nvidia.com/gpu into --num-gpus itself
            custom[name] = amount
    params: dict[str, str] = {"num-cpus": str(math.ceil(cpus) if cpus else 1)}
    if custom:
        params["resources"] = ray_start_resources(custom)
    spec: dict[str, Any] = {"containers": [_container("ray-worker", image, limits)]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "groupName": pool.name,
        "replicas": pool.start_replicas,
        "minReplicas": pool.autoscaling.min_replicas if pool.autoscaling else pool.replicas,
        "maxReplicas": pool.autoscaling.max_replicas if pool.autoscaling else pool.replicas,
        "rayStartParams": params,
        "template": {"spec": spec},
    }


def rayservice(fleet: FleetConfig, *, name: str = "hetserve", image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    config = serve_config(fleet, host="0.0.0.0", port=8000, gateway_resource=GATEWAY_RESOURCE)
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "serveConfigV2": yaml.safe_dump(config, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                # Pods follow the replicas Serve asks for where pools autoscale.
                **({"enableInTreeAutoscaling": True} if any(p.autoscaling for p in fleet.pools) else {}),
                "headGroupSpec": head_group(image),
                "workerGroupSpecs": [worker_group(p, image) for p in fleet.pools],
            },
        },
    }
