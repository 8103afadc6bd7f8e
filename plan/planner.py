"""From a workload, a base fleet and hardware types to a planned replica mix."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleet.config import FleetConfig
from fleet.profiles import EngineFigures, engine_figures
from plan.capacity import capacity
from plan.demand import RequestClass, request_classes
from plan.milp import PlanInfeasible, Solution, solve
from sim.workload import Workload
from workers.spec import PoolSpec


@dataclass(frozen=True, slots=True)
class Plan:
    """A replica mix and where each class goes."""

    label: str
    hardware: tuple[str, ...]
    replicas: dict[str, int]
    cost_per_hour: float
    power_w: float  # idle of all replicas + attributed load at peak
    assignment: dict[str, dict[str, float]] = field(default_factory=dict)  # class → type → share


@dataclass(frozen=True, slots=True)
class Problem:
    classes: list[RequestClass]
    hardware: tuple[str, ...]
    templates: dict[str, PoolSpec]
    figures: dict[str, EngineFigures]
    rate: np.ndarray
    cap: np.ndarray
    joules: np.ndarray
    price: np.ndarray
    idle_w: np.ndarray


def _template(base: FleetConfig, hw: str) -> PoolSpec:
    """A pool for ``hw``: the base fleet's pool on that hardware, else its first
    catalog-model pool moved to ``hw`` with a default batch limit."""
    modelled = [p for p in base.pools if engine_figures(p) is not None]
    if not modelled:
        raise PlanInfeasible("the base fleet has no pool whose model the hardware catalog knows")
    for p in modelled:
        if p.hardware == hw:
            return p.model_copy(update={"replicas": 1})
    ref = modelled[0]
    return PoolSpec(name=hw, hardware=hw, engine="emulated", model=ref.model, models=ref.models,
                    engine_args={"max_batch": 256}, max_ongoing_requests=256)


def build_problem(w: Workload, base: FleetConfig, hardware: list[str], window_s: float = 60.0) -> Problem:
    classes = request_classes(w, window_s)
    templates = {h: _template(base, h) for h in hardware}
    figures = {h: engine_figures(t) for h, t in templates.items()}
    C, H = len(classes), len(hardware)
    cap, joules = np.zeros((C, H)), np.zeros((C, H))
    for i, c in enumerate(classes):
        for j, h in enumerate(hardware):
            k = capacity(figures[h], c)
            if k is not None:
                cap[i, j], joules[i, j] = k.requests_per_s, k.attributed_j_per_request
    return Problem(classes, tuple(hardware), templates, figures,
                   np.array([c.rate_rps for c in classes]), cap, joules,
                   np.array([figures[h].price_per_hour for h in hardware]),
                   np.array([figures[h].hardware.idle_watts_replica for h in hardware]))


def plan_for(p: Problem, allowed: list[str], objective: str, label: str, *, max_replicas: int = 64,
             utilisation: float = 0.8) -> Plan:
    """The optimum restricted to ``allowed`` hardware types."""
    idx = [p.hardware.index(h) for h in allowed]
    sol: Solution = solve(p.rate, p.cap[:, idx], p.joules[:, idx], p.price[idx], p.idle_w[idx],
                          objective=objective, max_replicas=max_replicas, utilisation=utilisation)
    return _describe(p, allowed, idx, sol, label)


def _describe(p: Problem, allowed, idx, sol: Solution, label: str) -> Plan:
    load_w = float((sol.share * p.joules[:, idx] * p.rate[:, None]).sum())
    replicas = {h: int(n) for h, n in zip(allowed, sol.replicas) if n > 0}
    assignment = {c.key: {h: round(float(s), 3) for h, s in zip(allowed, sol.share[i]) if s > 1e-6}
                  for i, c in enumerate(p.classes)}
    return Plan(label, tuple(allowed), replicas,
                float(sum(p.price[j] * n for j, n in zip(idx, sol.replicas))),
                float(sum(p.idle_w[j] * n for j, n in zip(idx, sol.replicas))) + load_w, assignment)


def with_replicas(p: Plan, replicas: dict[str, int], problem: Problem, label: str | None = None) -> Plan:
    """``p`` with a new replica count (after verification added some)."""
    i = {h: problem.hardware.index(h) for h in replicas}
    extra_cost = sum(problem.price[i[h]] * (n - p.replicas.get(h, 0)) for h, n in replicas.items())
    extra_w = sum(problem.idle_w[i[h]] * (n - p.replicas.get(h, 0)) for h, n in replicas.items())
    return Plan(label or p.label, p.hardware, dict(replicas), p.cost_per_hour + extra_cost,
                p.power_w + extra_w, p.assignment)


def fleet_of(p: Plan, problem: Problem, base: FleetConfig) -> FleetConfig:
    """The planned fleet: one pool per chosen type, the base fleet's routing and gateway."""
    pools = [problem.templates[h].model_copy(update={"replicas": n}) for h, n in p.replicas.items()]
    return base.model_copy(update={"pools": pools})
