"""Search routing parameters by simulation; the winner is a routing YAML dict.

Candidates: every policy with its defaults first, then a seeded random sample
of the grid (policy × load-scorer weight × spill-over saturation × SLO
targets scaled for ``slo-efficiency``), stopped at ``trials`` or
``budget_s``. Objectives: ``energy`` (least attributed J/token) and ``cost``
(least $/Mtoken) among candidates whose SLO attainment reaches
``min_attainment``; ``goodput`` (most good requests/s). With no candidate
meeting the attainment floor, the one with the best attainment wins.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from routing.config import load_routing_config
from routing.presets import POLICIES, takes_scorers
from routing.profile import EfficiencyProfile
from sim.results import RunResult
from sim.run import simulate
from sim.workload import Workload
from workers.spec import PoolSpec

OBJECTIVES = ("energy", "cost", "goodput")
_POLICIES = tuple(p for p in POLICIES if p != "random")
_LOAD_WEIGHTS = (0.0, 0.1, 0.3, 1.0)
_SATURATIONS = (0.5, 0.75, 1.0)
_SLO_SCALES = (0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Trial:
    routing: dict
    result: RunResult
    meets_slo: bool


def candidates(slo_ttft_ms: float | None, slo_tpot_ms: float | None, seed: int) -> list[dict]:
    """Routing dicts to try, defaults first, then the grid in a seeded order."""
    slo = {k: v for k, v in (("ttft_ms", slo_ttft_ms), ("tpot_ms", slo_tpot_ms)) if v is not None}
    base = [{"policy": p, **({"slo": slo} if slo else {})} for p in _POLICIES]
    grid = []
    for policy, load, sat, scale in itertools.product(_POLICIES, _LOAD_WEIGHTS, _SATURATIONS, _SLO_SCALES):
        if (not takes_scorers(policy) or policy == "least-load") and load:
            continue
        if (policy != "slo-efficiency" or not slo) and scale != 1.0:
            continue
        c: dict = {"policy": policy, "spillover": {"saturation": sat}}
        if slo:
            c["slo"] = {k: v * scale for k, v in slo.items()}
        if load:
            c["scorers"] = {"load": load}
        grid.append(c)
    random.Random(seed).shuffle(grid)
    return base + [c for c in grid if c not in base]


def objective_key(objective: str, trial: Trial) -> tuple:
    """Sort key: smaller is better."""
    r = trial.result
    if objective == "goodput":
        return (-r.goodput_rps,)
    value = r.j_per_token_attributed if objective == "energy" else r.usd_per_mtok
    return (not trial.meets_slo, -r.slo_attainment if not trial.meets_slo else 0.0,
            float("inf") if value is None else value)


def tune(specs: list[PoolSpec], workload: Workload, objective: str, *,
         slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None,
         min_attainment: float = 0.9, trials: int = 30, budget_s: float = 60.0, seed: int = 0,
         profiles: Mapping[str, EfficiencyProfile] | None = None) -> tuple[dict, list[Trial]]:
    """Simulate candidates on ``workload`` (requests without targets get the
    given ones) and return the best routing dict and every trial, best first."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    workload = workload.with_default_slo(slo_ttft_ms, slo_tpot_ms)
    deadline = time.monotonic() + budget_s
    done: list[Trial] = []
    for routing in candidates(slo_ttft_ms, slo_tpot_ms, seed)[:trials]:
        if done and time.monotonic() > deadline:
            break
        config = load_routing_config(routing)
        result = simulate(specs, workload, config, profiles=profiles, seed=seed)
        done.append(Trial(routing, result, result.slo_attainment >= min_attainment))
    done.sort(key=lambda t: objective_key(objective, t))
    return done[0].routing, done
