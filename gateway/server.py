"""Start (and stop) a Ray cluster and the hetserve application on it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from gateway.build import build_app
from gateway.config import FleetConfig

APP_NAME = "hetserve"


@dataclass
class Running:
    url: str
    started_s: float


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
    if not ray.is_initialized():
        if address:
            ray.init(address=address, namespace="hetserve")
        else:
            # A fresh local cluster: never attach to a stale one left by an earlier run.
            os.environ.pop("RAY_ADDRESS", None)
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, namespace="hetserve")
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(fleet, admin_key, base_dir), name=APP_NAME, route_prefix="/", blocking=False)
    return Running(f"http://{host}:{port}", time.monotonic() - t0)


def stop() -> None:
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
