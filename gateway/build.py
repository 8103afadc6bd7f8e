"""Build the Ray Serve application for a fleet: one deployment per pool plus the gateway.

:func:`build` is the application builder Serve's own tools call
(``serve run gateway.app:build fleet=fleet.yaml``, or ``import_path:
gateway.app:build`` in a Serve config, see ``deploy.serve_config``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from ray.experimental import internal_kv
from ray.serve import Application

from deploy.serve_config import autoscaling_configs, gateway_actor_options
from fleet.config import GATEWAY_HEADROOM, FleetConfig, FleetConfigError, load_fleet, parse_fleet
from fleet.live import live_settings
from workers.pool import pool_deployment


class BuildArgs(BaseModel):
    """What ``serve run ... key=value`` or a Serve config's ``args`` may set."""

    model_config = ConfigDict(extra="forbid")

    fleet: str | dict[str, Any] | None = None  # a fleet file path, the fleet itself (inline), or None: the default
    admin_key: str | None = None


_TOKEN_KEY = b"internal-token"
_TOKEN_NAMESPACE = b"hetserve"


def internal_token() -> str:
    """The secret the gateway and its pools' internal endpoints share: one per Ray
    cluster, kept in Ray's key-value store. Every ``serve deploy`` rebuilds the app;
    a fresh secret per build would change every deployment's arguments, and during
    the rolling update new gateway replicas would meet old pool replicas (or the
    reverse) holding the other secret and answer 503. Without Ray (an app built to
    be inspected) a fresh one."""
    fresh = secrets.token_hex(16)
    if not internal_kv._internal_kv_initialized():
        return fresh
    internal_kv._internal_kv_put(_TOKEN_KEY, fresh, overwrite=False, namespace=_TOKEN_NAMESPACE)
    stored = internal_kv._internal_kv_get(_TOKEN_KEY, namespace=_TOKEN_NAMESPACE)
    return stored.decode() if stored else fresh


def build_app(fleet: FleetConfig, admin_key: str | None = None, base_dir: Path | None = None) -> Application:
    """``base_dir`` resolves relative paths in the fleet file (its ``profiles`` directory)."""
    from gateway.app import Gateway  # here, not at the top: gateway.app re-exports build (Serve's import path)

    trace = fleet.tracing.model_dump()
    # serve.run takes no application-level autoscaling policy: here Serve's own rule scales each
    # autoscaled pool, with the fleet's delays. Under `serve deploy` of a Serve config from
    # deploy.serve_config, the config's deployment entries and efficiency policy win over these.
    scaled = autoscaling_configs(fleet, app_policy=False, base_dir=base_dir)
    token = internal_token()
    pools = {
        p.name: pool_deployment(p, fleet.gateway.relay_window_s, trace, token, scaled.get(p.name))
        for p in fleet.pools
    }
    gateway = Gateway.options(
        max_ongoing_requests=fleet.gateway.max_ongoing_requests + GATEWAY_HEADROOM,
        ray_actor_options=gateway_actor_options(fleet),
        user_config=live_settings(fleet),
    )
    return gateway.bind(fleet.model_dump(), pools, admin_key, str(base_dir) if base_dir else None, token)


def build(args: dict[str, Any]) -> Application:
    """Serve's application builder: ``args`` is a :class:`BuildArgs` mapping."""
    try:
        parsed = BuildArgs.model_validate(args)
    except ValidationError as exc:
        raise FleetConfigError(f"application args: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    if isinstance(parsed.fleet, dict):
        fleet, base_dir = parse_fleet(parsed.fleet, "args.fleet"), None
    else:
        fleet, base_dir = load_fleet(parsed.fleet)
    return build_app(fleet, parsed.admin_key, base_dir)
