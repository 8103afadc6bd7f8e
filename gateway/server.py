"""Start (and stop) a Ray cluster and the hetserve application on it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from gateway.build import build_app
from fleet.config import FleetConfig

APP_NAME = "hetserve"


@dataclass
class Running:
    url: str
    started_s: float
    owns_cluster: bool  # started a local Ray cluster (rather than joining one)


def start(
    fleet: FleetConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    admin_key: str | None = None,
    base_dir: Path | None = None,
) -> Running:
    """Start Ray (local unless ``address`` names a cluster) and run the app; block until it answers."""
    t0 = time.monotonic()
    host = host or fleet.gateway.host
    port = fleet.gateway.port if port is None else port
    owns = False
    if not ray.is_initialized():
        owns = not address
        if address:
            ray.init(address=address, namespace="hetserve")
        else:
            # A fresh local cluster: never attach to a stale one left by an earlier run.
            os.environ.pop("RAY_ADDRESS", None)
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, namespace="hetserve")
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(fleet, admin_key, base_dir), name=APP_NAME, route_prefix="/", blocking=False)
    return Running(f"http://{host}:{port}", time.monotonic() - t0, owns)


def stop(running: Running | None = None) -> None:
    """Remove hetserve; on a cluster we joined, leave Serve and other apps running."""
    if running is not None and not running.owns_cluster:
        serve.delete(APP_NAME)
        return
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
