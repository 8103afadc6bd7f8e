"""A Ray Serve config (the YAML ``serve deploy`` takes) for a fleet.

One application, ``hetserve``, built by ``gateway.app:build`` from the fleet
carried inline in its ``args`` (nodes need no copy of the fleet file), and one
``deployments`` entry per pool plus the gateway, so ``serve status`` and a
later ``serve deploy`` of an edited file see each pool's replicas, resources
and ``max_ongoing_requests``. Serve applies a deployments entry over what the
code sets, so those numbers in this file win over the fleet's.
"""

from __future__ import annotations

from typing import Any

from fleet.config import FleetConfig
from fleet.live import live_settings
from workers.spec import PoolSpec

APP_NAME = "hetserve"
IMPORT_PATH = "gateway.app:build"
GATEWAY_DEPLOYMENT = "gateway"


def pool_deployment_entry(pool: PoolSpec) -> dict[str, Any]:
    return {
        "name": pool.name,
        "num_replicas": pool.replicas,
        "max_ongoing_requests": pool.max_ongoing_requests,
        "ray_actor_options": pool.ray_actor_options(),
    }


def gateway_actor_options(fleet: FleetConfig, gateway_resource: str | None = None) -> dict[str, Any]:
    """No CPU reserved; the fleet's ``gateway.resources`` (and ``gateway_resource``, a custom resource only
    the gateway's nodes hold) pin it to the nodes holding them."""
    options: dict[str, Any] = {"num_cpus": 0}
    resources = dict(fleet.gateway.resources)
    if gateway_resource:
        resources[gateway_resource] = 0.001
    if resources:
        options["resources"] = resources
    return options


def gateway_deployment_entry(fleet: FleetConfig, gateway_resource: str | None = None) -> dict[str, Any]:
    """Its ``user_config`` (``fleet.live``) is what a ``serve deploy`` changes in the running gateway."""
    return {
        "name": GATEWAY_DEPLOYMENT,
        "num_replicas": 1,
        "max_ongoing_requests": fleet.gateway.max_ongoing_requests,
        "ray_actor_options": gateway_actor_options(fleet, gateway_resource),
        "user_config": live_settings(fleet),
    }


def serve_config(
    fleet: FleetConfig,
    *,
    fleet_path: str | None = None,
    host: str = "0.0.0.0",
    port: int | None = None,
    gateway_resource: str | None = None,
) -> dict[str, Any]:
    """The Serve config; ``fleet_path`` refers to a file on the cluster instead of carrying the fleet inline."""
    fleet_arg: str | dict[str, Any] = fleet_path or fleet.model_dump(mode="json", exclude_unset=True)
    return {
        "proxy_location": fleet.gateway.proxy_location,
        "http_options": {"host": host, "port": fleet.gateway.port if port is None else port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"fleet": fleet_arg},
                "deployments": [gateway_deployment_entry(fleet, gateway_resource)]
                + [pool_deployment_entry(p) for p in fleet.pools],
            }
        ],
    }
