"""A Ray Serve config (the YAML ``serve deploy`` takes) for a fleet.

One application, ``hetserve``, built by ``gateway.app:build`` from the fleet
carried inline in its ``args`` (nodes need no copy of the fleet file), and one
``deployments`` entry per pool plus the gateway, so ``serve status`` and a
later ``serve deploy`` of an edited file see each pool's replicas (or
``autoscaling_config``), resources and ``max_ongoing_requests``. Where a pool's
autoscaling is efficiency-aware, the application carries the fleet-wide
``autoscaling_policy`` (``workers.autoscaling``). Serve applies a deployments entry over what the
code sets, so those numbers in this file win over the fleet's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet.autoscaling import (
    PoolFigures,
    app_policy_driven,
    fleet_figures,
    scaling_profiles,
    serve_app_policy,
    serve_autoscaling_config,
)
from fleet.config import GATEWAY_HEADROOM, FleetConfig
from fleet.live import live_settings
from workers.serve_env import with_replica_env
from workers.spec import PoolSpec

APP_NAME = "hetserve"
IMPORT_PATH = "gateway.app:build"
GATEWAY_DEPLOYMENT = "gateway"


def pool_deployment_entry(pool: PoolSpec, autoscaling_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """``autoscaling_config`` (``fleet.autoscaling``) replaces a fixed ``num_replicas``."""
    entry: dict[str, Any] = {"name": pool.name}
    if autoscaling_config is None:
        entry["num_replicas"] = pool.replicas
    else:
        entry["autoscaling_config"] = autoscaling_config
    entry["max_ongoing_requests"] = pool.max_ongoing_requests
    entry["ray_actor_options"] = pool.ray_actor_options()
    return entry


def _figures(fleet: FleetConfig, base_dir: Path | None) -> dict[str, PoolFigures]:
    directory = fleet.profiles and (base_dir or Path.cwd()) / fleet.profiles
    return fleet_figures(fleet.pools, scaling_profiles(fleet.pools, directory), fleet.routing.slo)


def autoscaling_configs(fleet: FleetConfig, *, app_policy: bool, base_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Serve ``autoscaling_config`` of every autoscaled pool, on the fleet's measured profiles
    (its ``profiles`` directory, relative to ``base_dir``) else modelled ones;
    ``app_policy``: the application-level policy scales them (Serve's delays 0)."""
    figures = _figures(fleet, base_dir)
    return {p.name: serve_autoscaling_config(p, figures[p.name], app_policy=app_policy)
            for p in fleet.pools if p.autoscaling}


def gateway_actor_options(fleet: FleetConfig, gateway_resource: str | None = None) -> dict[str, Any]:
    """No CPU reserved; the fleet's ``gateway.resources`` (and ``gateway_resource``, a custom resource only
    the gateway's nodes hold) pin it to the nodes holding them."""
    options: dict[str, Any] = {"num_cpus": 0}
    resources = dict(fleet.gateway.resources)
    if gateway_resource:
        resources[gateway_resource] = 0.001
    if resources:
        options["resources"] = resources
    return with_replica_env(options)


def gateway_deployment_entry(fleet: FleetConfig, gateway_resource: str | None = None) -> dict[str, Any]:
    """Its ``user_config`` (``fleet.live``) is what a ``serve deploy`` changes in the running gateway."""
    return {
        "name": GATEWAY_DEPLOYMENT,
        "num_replicas": 1,
        "max_ongoing_requests": fleet.gateway.max_ongoing_requests + GATEWAY_HEADROOM,
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
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """The Serve config; ``fleet_path`` refers to a file on the cluster instead of carrying the fleet inline;
    ``base_dir`` resolves the fleet's ``profiles`` directory (the autoscaling figures)."""
    fleet_arg: str | dict[str, Any] = fleet_path or fleet.model_dump(mode="json", exclude_unset=True)
    scaled = autoscaling_configs(fleet, app_policy=app_policy_driven(fleet.pools), base_dir=base_dir)
    app: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": {"fleet": fleet_arg},
        "deployments": [gateway_deployment_entry(fleet, gateway_resource)]
        + [pool_deployment_entry(p, scaled.get(p.name)) for p in fleet.pools],
    }
    if app_policy_driven(fleet.pools):
        app["autoscaling_policy"] = serve_app_policy(_figures(fleet, base_dir))
    return {
        "proxy_location": fleet.gateway.proxy_location,
        "http_options": {"host": host, "port": fleet.gateway.port if port is None else port},
        "applications": [app],
    }
