"""Check a plan by simulation; grow it one replica at a time until it meets the target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fleet.config import FleetConfig
from plan.planner import Plan, Problem, fleet_of, with_replicas
from sim.results import RunResult
from sim.run import simulate
from sim.workload import Workload


@dataclass(slots=True)
class Verified:
    plan: Plan
    result: RunResult
    met: bool
    added: list[str] = field(default_factory=list)  # hardware type of each replica added


def _worst(result: RunResult, fleet: FleetConfig) -> str:
    """The type whose pool carried the most load (time-averaged sequences per replica)."""
    hw = {p.name: p.hardware for p in fleet.pools}
    reps = {p.name: p.replicas for p in fleet.pools}
    pool = max(result.pools, key=lambda r: (r.mean_load / reps[r.name], r.requests))
    return hw[pool.name]


def verify(plan: Plan, problem: Problem, base: FleetConfig, w: Workload, *, target: float = 0.95,
           max_rounds: int = 8, seed: int = 0, profiles: Mapping | None = None) -> Verified:
    """Simulate ``plan``'s fleet on ``w``; while attainment is under ``target``,
    add a replica to the most loaded type (at most ``max_rounds`` times).
    ``profiles`` (measured, by pool name = hardware key) replace modelled ones in the simulation."""
    added: list[str] = []
    while True:
        fleet = fleet_of(plan, problem, base)
        result = simulate(fleet.pools, w, fleet.routing, profiles=profiles, seed=seed, label=plan.label)
        if result.slo_attainment >= target or len(added) >= max_rounds:
            return Verified(plan, result, result.slo_attainment >= target, added)
        h = _worst(result, fleet)
        added.append(h)
        plan = with_replicas(plan, {**plan.replicas, h: plan.replicas[h] + 1}, problem)
