"""hetserve's own HTTP contract beyond OpenAI's: the headers it reads and
writes, and the ``GET /v1/fleet`` document.

One owner for these shapes: the gateway builds ``PoolView``s, and its
clients (the load tester's energy accounting, calibration) parse the same
model. Counters and figures a client may not find (an older gateway) have
defaults; the gateway always fills every field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

#: Request headers: per-request latency targets and pinning to one pool.
SLO_TTFT_HEADER = "x-hetserve-slo-ttft-ms"
SLO_TPOT_HEADER = "x-hetserve-slo-tpot-ms"
PIN_HEADER = "x-hetserve-pool-pin"
#: Response headers: which pool served the request, and why it was chosen.
POOL_HEADER = "x-hetserve-pool"
ROUTE_REASON_HEADER = "x-hetserve-route-reason"


class PoolView(BaseModel):
    """One pool in ``/v1/fleet``: its spec, live load and cumulative counters."""

    model_config = ConfigDict(extra="ignore")

    name: str
    hardware: str = "unknown"
    engine: str = "unknown"
    model: str | None = None  # the engine's model (a catalog key for emulated pools)
    emulated: bool = False
    models: list[str] = []  # served model names
    replicas: int = 1
    healthy: bool = True  # routable now: answered its polls and not ejected
    ready: bool = True  # has answered a poll and is not stale
    starting: bool = False  # has not answered its first poll yet
    ejected_for_s: float = 0.0  # outlier detection: seconds of ejection left (0: not ejected)
    ejected_until: float | None = None  # Unix time
    ejection_reason: str | None = None
    ejections: int = 0  # times ejected since the gateway started
    in_flight: int = 0
    running: int = 0
    waiting: int = 0
    capacity: int = 1
    max_seq_len: int = 1 << 30
    price_per_hour: float | None = None
    output_tokens: int = 0
    prompt_tokens: int = 0
    energy_joules: float = 0.0  # attributed: above the pool's idle draw
    energy_total_joules: float = 0.0  # idle included
    watts: float = 0.0
    power_source: str = "unknown"
    power_provenance: str | None = None
    last_error: str | None = None
    profile: dict[str, Any] | None = None  # the routing profile, unless ?profiles=false

    @property
    def busy(self) -> bool:
        return bool(self.in_flight or self.running or self.waiting)


class FleetView(BaseModel):
    """The whole ``GET /v1/fleet`` document."""

    model_config = ConfigDict(extra="ignore")

    policy: str | None = None  # the gateway's routing policy
    pools: list[PoolView]

    def by_name(self) -> dict[str, PoolView]:
        return {p.name: p for p in self.pools}
