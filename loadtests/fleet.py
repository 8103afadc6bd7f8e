"""Energy from hetserve's fleet counters, read before and after a run.

``GET {base}/v1/fleet`` returns cumulative counters per pool; the difference
between two snapshots is what the fleet spent during the run. Two totals, as
in the design: ``energy_joules`` is attributed to requests (above each pool's
idle draw), ``energy_total_joules`` includes idle. The counters cover all
traffic the fleet served meanwhile, not only this run's.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ValidationError

from fleet.api import FleetView, PoolView


class PoolEnergy(BaseModel):
    """Energy one pool spent during the run, and per output token."""

    name: str
    hardware: str
    power_source: str
    output_tokens: int
    energy_joules: float
    energy_total_joules: float
    j_per_token: float | None
    j_per_token_total: float | None


class EnergyReport(BaseModel):
    policy: str | None
    output_tokens: int
    energy_joules: float
    energy_total_joules: float
    j_per_token: float | None
    j_per_token_total: float | None
    pools: list[PoolEnergy]


class FleetUnavailable(Exception):
    """The target has no usable ``/v1/fleet`` (not hetserve, or an old one)."""


async def snapshot_fleet(
    client: httpx.AsyncClient, base_url: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0
) -> FleetView:
    """Read the counters; ``headers`` carry the API key (the gateway guards ``/v1/fleet``)."""
    url = base_url.rstrip("/") + "/v1/fleet"
    try:
        response = await client.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise FleetUnavailable(f"GET {url} failed: {type(e).__name__}") from None
    if response.status_code != 200:
        raise FleetUnavailable(f"GET {url} answered {response.status_code}")
    try:
        return FleetView.model_validate_json(response.content)
    except ValidationError as e:
        raise FleetUnavailable(f"GET {url} returned no fleet counters: {e.errors()[0]['msg']}") from None


def energy_between(before: FleetView, after: FleetView) -> EnergyReport:
    """Per-pool and overall energy between two snapshots; a new pool starts from zero."""
    start = {pool.name: pool for pool in before.pools}
    pools = []
    for end in after.pools:
        begin = start.get(end.name, PoolView(name=end.name))
        tokens = end.output_tokens - begin.output_tokens
        joules = end.energy_joules - begin.energy_joules
        total = end.energy_total_joules - begin.energy_total_joules
        pools.append(
            PoolEnergy(
                name=end.name,
                hardware=end.hardware,
                power_source=end.power_source,
                output_tokens=tokens,
                energy_joules=joules,
                energy_total_joules=total,
                j_per_token=_per(joules, tokens),
                j_per_token_total=_per(total, tokens),
            )
        )
    tokens = sum(p.output_tokens for p in pools)
    joules = sum(p.energy_joules for p in pools)
    total = sum(p.energy_total_joules for p in pools)
    return EnergyReport(
        policy=after.policy,
        output_tokens=tokens,
        energy_joules=joules,
        energy_total_joules=total,
        j_per_token=_per(joules, tokens),
        j_per_token_total=_per(total, tokens),
        pools=pools,
    )


def _per(joules: float, tokens: int) -> float | None:
    return joules / tokens if tokens > 0 else None
