"""Start (and stop) a Ray cluster and the hetserve application on it."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve
from ray.exceptions import AuthenticationError

from deploy.placement import unplaceable
from gateway.build import build_app
from fleet.config import FleetConfig

APP_NAME = "hetserve"

#: The line of a replica's traceback that says what went wrong ("TypeError: ...").
_EXCEPTION_LINE = re.compile(r"^[ \t]*(?:[\w.]+\.)?\w*(?:Error|Exception)(?::.*)?$", re.MULTILINE)


class DeploymentFailed(RuntimeError):
    """hetserve did not start and left nothing deployed; ``reasons``: deployment name -> one line."""

    def __init__(self, reasons: dict[str, str]):
        self.reasons = reasons
        super().__init__("; ".join(f"{name}: {why}" for name, why in reasons.items()))


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
            _join(address)
        else:
            # A fresh local cluster: never attach to a stale one left by an earlier run.
            os.environ.pop("RAY_ADDRESS", None)
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, namespace="hetserve")
    running = Running(f"http://{host}:{port}", time.monotonic() - t0, owns)
    missing = unplaceable(fleet.pools, ray.nodes())
    if missing:
        _abandon(running, deployed=False)
        raise DeploymentFailed(missing)
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(build_app(fleet, admin_key, base_dir), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # Serve's DEPLOY_FAILED: say why per pool, leave nothing behind
        reasons = failure_reasons(APP_NAME) or {APP_NAME: one_line(str(exc))}
        _abandon(running, deployed=True)
        raise DeploymentFailed(reasons) from None
    running.started_s = time.monotonic() - t0
    return running


def _join(address: str) -> None:
    """Join an existing cluster; a token Ray refuses (or none, where the cluster asks for one) is one line."""
    try:
        ray.init(address=address, namespace="hetserve")
    except (AuthenticationError, ConnectionError, RuntimeError) as exc:
        # A refused token often reads as a plain connection failure, so the hint goes with every one.
        hint = (
            " (is it running, and does it use token authentication? then set RAY_AUTH_MODE=token and its token"
            " in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        )
        raise DeploymentFailed({f"Ray cluster {address}": f"cannot join: {one_line(getattr(exc, 'message', str(exc)))}{hint}"}) from None


def failure_reasons(app: str) -> dict[str, str]:
    """Deployment name -> one line, for each deployment of ``app`` Serve reports as failed."""
    overview = serve.status().applications.get(app)
    if overview is None:
        return {}
    return {
        name: one_line(d.message)
        for name, d in overview.deployments.items()
        if d.status in ("DEPLOY_FAILED", "UNHEALTHY")
    }


def one_line(message: str) -> str:
    """The exception line of a traceback Serve reports, else its first line."""
    found = _EXCEPTION_LINE.findall(message)
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else "failed (no message from Serve)"


def _abandon(running: Running, deployed: bool) -> None:
    """Undo a start that failed: delete the half-deployed app, and the cluster if we started it."""
    if running.owns_cluster:
        stop(running)
    elif deployed:
        serve.delete(APP_NAME)


def stop(running: Running | None = None) -> None:
    """Remove hetserve; on a cluster we joined, leave Serve and other apps running."""
    if running is not None and not running.owns_cluster:
        serve.delete(APP_NAME)
        return
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
