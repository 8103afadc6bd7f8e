"""One call from fleet specs, a workload and a routing config to a result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fleet.autoscaling import fleet_figures
from routing.config import RoutingConfig, load_routing_config
from routing.profile import EfficiencyProfile
from sim.pools import build_pools
from sim.results import RunResult, summarize
from sim.simulation import Simulation
from sim.workload import Workload
from workers.spec import PoolSpec


def simulate(specs: Iterable[PoolSpec], workload: Workload, routing: RoutingConfig | Mapping,
             *, profiles: Mapping[str, EfficiencyProfile] | None = None, seed: int = 0,
             learn: bool = False, label: str | None = None, dispatch_s: float = 0.0) -> RunResult:
    """Simulate ``workload`` on fresh pools built from ``specs`` and summarise it.

    Pools with ``autoscaling`` are scaled by ``routing.scaler`` on figures
    read off their (modelled or given) profiles at the routing SLOs."""
    config = routing if isinstance(routing, RoutingConfig) else load_routing_config(routing)
    pools = build_pools(specs, workload.models, profiles)
    figures = fleet_figures([p.spec for p in pools], {p.name: p.profile for p in pools}, config.slo)
    sim = Simulation(workload, pools, config, seed=seed, learn=learn, dispatch_s=dispatch_s,
                     autoscale=figures or None)
    return summarize(sim.run(), label)
