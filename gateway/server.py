"""Start (and stop) a Ray cluster and the hetserve application on it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import ray
from ray import serve
from ray.exceptions import AuthenticationError

from deploy.ingress import local_cluster_env
from deploy.placement import unplaceable
from gateway.build import build_app
from fleet.config import FleetConfig

APP_NAME = "hetserve"
log = logging.getLogger("hetserve.server")
T = TypeVar("T")

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
            with local_cluster_env():  # Ray's processes inherit it (deploy.ingress)
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, namespace="hetserve")
    running = Running(f"http://{host}:{port}", time.monotonic() - t0, owns)
    missing = unplaceable(fleet.pools, ray.nodes())
    if missing:
        _abandon(running, deployed=False)
        raise DeploymentFailed(missing)
    serve.start(http_options={"host": host, "port": port}, proxy_location=fleet.gateway.proxy_location)
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


def drain(timeout_s: float) -> int | None:
    """Make the gateway refuse new requests and wait for those in flight; None if it did not answer.

    Bounded by ``timeout_s`` plus a margin even when Ray itself is already
    going away (a SIGTERM to the whole process group reaches Ray's processes too).
    """
    def call() -> int:
        handle = serve.get_deployment_handle("gateway", APP_NAME)
        return handle.drain.remote(timeout_s).result(timeout_s=timeout_s + 5)

    done, left = _bounded(call, timeout_s + 10)
    return left if done else None


def stop(running: Running | None = None, timeout_s: float = 20.0) -> bool:
    """Remove hetserve; on a cluster we joined, leave Serve and other apps running.

    On a cluster we started, stop Serve and Ray within ``timeout_s`` and then
    kill whatever child processes are left (Ray's, the pools' engine
    processes); returns False when something had to be killed.
    """
    if running is not None and not running.owns_cluster:
        done, _ = _bounded(lambda: serve.delete(APP_NAME), timeout_s)
        return done
    children = psutil.Process().children(recursive=True)  # before Ray reparents anything
    # Serve's shutdown waits for the replicas' own (a vLLM engine takes 5 s or more to tear down); Ray's is quick.
    serve_done, _ = _bounded(serve.shutdown, timeout_s * 0.75)
    ray_done, _ = _bounded(ray.shutdown, timeout_s * 0.25)
    return _kill_left(children) == 0 and serve_done and ray_done


def _bounded(fn: Callable[[], T], timeout_s: float) -> tuple[bool, T | None]:
    """Run ``fn`` in a daemon thread; give up waiting after ``timeout_s`` (the thread is abandoned)."""
    result: list = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception as exc:  # a dying cluster raises many kinds; the caller only needs "done"
            log.warning("%s failed during shutdown: %s", getattr(fn, "__name__", "call"), exc)
            result.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.warning("%s did not finish within %.0f s", getattr(fn, "__name__", "call"), timeout_s)
        return False, None
    return True, result[0]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_left(processes: list[psutil.Process], grace_s: float = 3.0) -> int:
    """SIGTERM, then SIGKILL, the processes still alive; returns how many were still alive."""
    alive = [p for p in processes if _alive(p)]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, still = psutil.wait_procs(alive, timeout=grace_s)
    for p in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(still, timeout=grace_s)
    if alive:
        log.warning("killed %d process(es) left after shutdown", len(alive))
    return len(alive)


def wait_ready(url: str, stop: threading.Event, interval_s: float = 1.0) -> bool:
    """Poll ``/ready`` until every pool is ready (True) or ``stop`` is set (False)."""
    while not stop.is_set():
        try:
            r = httpx.get(f"{url}/ready", timeout=5)
            if r.json().get("all_pools_ready"):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        stop.wait(interval_s)
    return False
