"""Can each pool's replica be placed on some node of the cluster? Checked before deploying.

A replica needs all its resources on one node; Serve would otherwise leave it
pending forever and ``serve.run`` would wait with it. The nodes are what
``ray.nodes()`` reports (``Alive`` and ``Resources``), so this runs against a
cluster the caller joined and, in tests, against plain dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from workers.spec import PoolSpec

#: Ray's names for what ``ray_actor_options`` calls num_cpus / num_gpus.
_BUILTIN = {"num_cpus": "CPU", "num_gpus": "GPU"}


def replica_demand(pool: PoolSpec) -> dict[str, float]:
    """The resources one replica of ``pool`` asks Ray for, by Ray's resource names."""
    opts = pool.ray_actor_options()
    demand = {name: float(opts[key]) for key, name in _BUILTIN.items() if opts.get(key)}
    demand.update({k: float(v) for k, v in opts.get("resources", {}).items() if v})
    return demand


def unplaceable(pools: Iterable[PoolSpec], nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Pool name -> one-line reason, for each pool no live node can hold one replica of."""
    totals = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    reasons = {}
    for pool in pools:
        demand = replica_demand(pool)
        if any(all(node.get(k, 0) >= v for k, v in demand.items()) for node in totals):
            continue
        asked = ", ".join(f"{k}: {v:g}" for k, v in sorted(demand.items()))
        offered = sorted({k for node in totals for k in demand if node.get(k, 0) > 0})
        have = f"nodes offering some of it: {', '.join(offered)}" if offered else "no node offers any of it"
        reasons[pool.name] = f"no node of the cluster has {asked} for one replica ({have})"
    return reasons
