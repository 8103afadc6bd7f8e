"""The part of a fleet the running gateway takes without a restart.

Ray Serve hands a deployment's ``user_config`` to its replicas'
``reconfigure`` in place, so a ``serve deploy`` that changes only the
gateway's ``user_config`` reaches the running gateway: the routing section
and the gateway keys in :data:`LIVE_GATEWAY_KEYS`. Everything else (pools,
keys, tracing, ports) is fixed when the gateway starts.

The shape: ``{"routing": <the fleet's routing section>, "gateway": {<live
keys>}}``; either part may be left out (it then stays as it is).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fleet.config import FleetConfig, FleetConfigError, describe_validation_error

#: Gateway settings a ``serve deploy`` may change while the gateway runs.
LIVE_GATEWAY_KEYS = ("poll_interval_s", "poll_timeout_s", "down_after_failed_polls", "failover")


def live_settings(fleet: FleetConfig) -> dict[str, Any]:
    """The gateway deployment's ``user_config`` for ``fleet``."""
    gateway = fleet.gateway.model_dump(mode="json", include=set(LIVE_GATEWAY_KEYS))
    return {"routing": fleet.routing.model_dump(mode="json", exclude_unset=True), "gateway": gateway}


def apply_live(fleet: FleetConfig, user_config: Any) -> FleetConfig:
    """``fleet`` with ``user_config`` applied; :class:`FleetConfigError` names a bad or fixed key."""
    if not isinstance(user_config, dict):
        raise FleetConfigError("user_config: expected a mapping")
    unknown = set(user_config) - {"routing", "gateway"}
    if unknown:
        raise FleetConfigError(f"user_config.{sorted(unknown)[0]}: unknown key (routing, gateway)")
    gateway = user_config.get("gateway") or {}
    if not isinstance(gateway, dict):
        raise FleetConfigError("user_config.gateway: expected a mapping")
    fixed = sorted(set(gateway) - set(LIVE_GATEWAY_KEYS))
    if fixed:
        raise FleetConfigError(
            f"user_config.gateway.{fixed[0]}: not changeable while the gateway runs "
            f"(live: {', '.join(LIVE_GATEWAY_KEYS)})"
        )
    data = fleet.model_dump(mode="json", exclude_unset=True)
    data["gateway"] = {**fleet.gateway.model_dump(mode="json"), **gateway}
    if "routing" in user_config:
        data["routing"] = user_config["routing"]
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise FleetConfigError(f"user_config: {describe_validation_error(exc)}") from None
