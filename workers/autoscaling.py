"""The efficiency-aware scaler as Ray Serve's application-level autoscaling policy.

A Serve config's ``autoscaling_policy`` (written by ``hetserve config`` when a
pool's ``autoscaling.efficiency`` is on) names :class:`EfficiencyPolicy` with
every autoscaled pool's figures as ``policy_kwargs``. Serve's controller
builds it once and calls it every control-loop tick with one
``AutoscalingContext`` per autoscaled deployment; it turns them into
``routing.scaler`` snapshots (ready = running replicas, starting = target −
running, load = ongoing requests averaged over ``look_back_period_s``), on the
context's clock, and returns the scaler's replica counts. Serve then applies
each deployment's bounds (and its delays, 0 here: the scaler keeps the fleet
file's own).

Tokens reach the gateway over each replica's own HTTP endpoint, not through
Serve handles, so Serve's ``total_num_requests`` does not see a pool's load.
Each replica reports its running and waiting sequences instead
(``PoolReplica.record_autoscaling_stats``, metric :data:`SEQUENCES_METRIC`),
and both policies here read that: :class:`EfficiencyPolicy` and, for pools
scaled by Serve's own rule, :func:`sequences_policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from routing.scaler import PoolFigures, Scaler

logger = logging.getLogger("ray.serve")

#: The custom autoscaling metric every pool replica reports: running + waiting sequences.
SEQUENCES_METRIC = "sequences"


def pool_load(ctx: Any) -> float:
    """Sequences a deployment holds now: the sum of its replicas' reports, averaged by Serve
    over ``look_back_period_s``; ``total_num_requests`` until the first reports arrive."""
    reported = (ctx.aggregated_metrics or {}).get(SEQUENCES_METRIC)
    if not reported:
        return float(ctx.total_num_requests)
    return float(sum(reported.values()))


def sequences_policy(ctx: Any) -> tuple[float, dict]:
    """Serve's default rule (replicas = load / ``target_ongoing_requests``) on :func:`pool_load`.

    Serve's wrapper applies the deployment's bounds, delays and scaling factors."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    return pool_load(ctx) / ctx.config.get_target_ongoing_requests(), {}


class EfficiencyPolicy:
    """Callable Serve keeps between ticks; ``pools``: ``PoolFigures.to_dict()`` by pool name."""

    def __init__(self, pools: Mapping[str, Mapping[str, Any]]):
        self.figures = {name: PoolFigures.from_dict(f) for name, f in pools.items()}
        self._now = 0.0
        self.scaler = Scaler(clock=lambda: self._now)

    def __call__(self, contexts: Mapping[Any, Any]) -> tuple[dict[Any, int], dict[Any, dict]]:
        ids, loads = [], []
        for dep_id, ctx in contexts.items():
            figures = self.figures.get(dep_id.name)
            if figures is None:  # not an autoscaled pool of this fleet: Serve keeps its count
                continue
            if ctx.current_time is not None:
                self._now = max(self._now, ctx.current_time)
            ready = ctx.current_num_replicas
            starting = max(0, ctx.target_num_replicas - ready)
            ids.append(dep_id)
            loads.append(figures.load(ready, starting, pool_load(ctx)))
        decisions = {}
        for dep_id, d in zip(ids, self.scaler.decide(loads)):
            decisions[dep_id] = d.replicas
            if d.delta:
                logger.info("hetserve autoscaling %s: %d -> %d replicas (%s)", d.pool, d.replicas - d.delta,
                            d.replicas, d.reason)
        return decisions, {dep_id: {} for dep_id in contexts}
