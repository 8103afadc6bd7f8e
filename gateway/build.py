"""Build the Ray Serve application for a fleet: one deployment per pool plus the gateway."""

from __future__ import annotations

from pathlib import Path

from ray.serve import Application

from gateway.app import Gateway
from fleet.config import FleetConfig
from workers.pool import pool_deployment


def build_app(fleet: FleetConfig, admin_key: str | None = None, base_dir: Path | None = None) -> Application:
    """``base_dir`` resolves relative paths in the fleet file (its ``profiles`` directory)."""
    trace = fleet.tracing.model_dump()
    pools = {p.name: pool_deployment(p, fleet.gateway.relay_window_s, trace) for p in fleet.pools}
    gateway = Gateway.options(max_ongoing_requests=fleet.gateway.max_ongoing_requests)
    return gateway.bind(fleet.model_dump(), pools, admin_key, str(base_dir) if base_dir else None)
