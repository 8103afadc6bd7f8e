"""Search routing parameters by simulation; the winner is a routing YAML dict.

Candidates: every preset with its defaults first, then a seeded random
sample of the grid over the default policy's parameters, written out as
``plugins`` + ``schedulingProfiles`` (``routing.presets``): the packed
scorer (``slo-energy``, or ``slo-cost`` for the cost objective) and the
margin it packs to, the predicted-SLO ``margin`` and whether it protects the TPOT targets
running on a pool (``protect_in_flight``), the ``headroom`` margin (or no headroom), a
weight for the average-efficiency and load scorers, and the spill-over
saturation; stopped at ``trials`` or ``budget_s``. Objectives: ``energy``
(least attributed J/token) and ``cost`` (least $/Mtoken) among candidates
whose SLO attainment reaches ``min_attainment``; ``goodput`` (most good
requests/s). With no candidate meeting the attainment floor, the one with
the best attainment wins.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from routing.config import load_routing_config
from routing.presets import COMPARED_POLICIES, expand
from routing.profile import EfficiencyProfile
from sim.results import RunResult
from sim.run import simulate
from sim.workload import Workload
from workers.spec import PoolSpec

OBJECTIVES = ("energy", "cost", "goodput")
_MARGINS = (0.0, 0.1, 0.2, 0.3)
_HEADROOM = (None, 0.0, 0.1, 0.3)  # None: no headroom filter
_AVERAGE_WEIGHTS = (0.0, 0.5, 1.0)  # of the average-J/token (or cost) scorer beside the packed one
_LOAD_WEIGHTS = (0.0, 0.1, 0.3)
_SATURATIONS = (0.75, 1.0)
_PACKING = (0.0, 0.1, 0.3)  # the packed scorer's margin under the TPOT target
_PROTECT = (True, False)  # predicted-slo's protect_in_flight


@dataclass(frozen=True)
class Setting:
    """One setting to try: its name (a preset's, or the grid's parameters) and its routing dict."""

    label: str
    routing: dict


@dataclass(frozen=True)
class GridPoint:
    """One point of the grid over the default policy's parameters (``policy``: ``slo-energy`` or ``slo-cost``)."""

    policy: str
    margin: float
    headroom: float | None  # None: no headroom filter
    average: float
    load: float
    saturation: float
    packing: float
    protect: bool

    @property
    def label(self) -> str:
        return (f"margin {self.margin} protect {self.protect} "
                f"headroom {'none' if self.headroom is None else self.headroom} packing {self.packing} "
                f"efficiency {self.average or 0} load {self.load or 0} saturation {self.saturation}")

    def routing(self, extra: dict) -> dict:
        return {**spelled_out(self.policy, margin=self.margin, headroom=self.headroom, average=self.average,
                              load=self.load, packing=self.packing, protect=self.protect),
                "spillover": {"saturation": self.saturation}, **extra}


@dataclass(frozen=True)
class Trial:
    label: str  # the setting's (``Setting.label``)
    routing: dict
    result: RunResult
    meets_slo: bool


def spelled_out(policy: str, *, margin: float, headroom: float | None, average: float = 0.0,
                load: float = 0.0, packing: float = 0.1, protect: bool = True) -> dict:
    """``policy`` (``slo-energy`` or ``slo-cost``) as plugins and profiles with these parameters."""
    weights = {"efficiency" if policy == "slo-energy" else "cost": average, "load": load}
    doc = expand(policy, {k: w for k, w in weights.items() if w})
    for pl in doc["plugins"]:
        if pl["type"] == "predicted-slo":
            pl["parameters"] = {"margin": margin, "protect_in_flight": protect}
        elif pl["type"] == "headroom" and headroom is not None:
            pl["parameters"] = {"margin": headroom}
        elif pl["type"] in ("packed-energy", "packed-cost"):
            pl["parameters"] = {"margin": packing}
    if headroom is None:
        doc["plugins"] = [pl for pl in doc["plugins"] if pl["type"] != "headroom"]
        for pr in doc["schedulingProfiles"]:
            pr["plugins"] = [r for r in pr["plugins"] if r["pluginRef"] != "headroom"]
    return {"policy": policy, **doc}


def candidates(slo_ttft_ms: float | None, slo_tpot_ms: float | None, seed: int,
               objective: str = "energy") -> list[Setting]:
    """The settings to try, presets first, then the grid in a seeded order."""
    slo = {k: v for k, v in (("ttft_ms", slo_ttft_ms), ("tpot_ms", slo_tpot_ms)) if v is not None}
    extra = {"slo": slo} if slo else {}
    base = [Setting(p, {"policy": p, **extra}) for p in COMPARED_POLICIES]
    policy = "slo-cost" if objective == "cost" else "slo-energy"
    grid = [GridPoint(policy, m, h, a, ld, sat, pk, pr)
            for m, h, a, ld, sat, pk, pr in itertools.product(_MARGINS, _HEADROOM, _AVERAGE_WEIGHTS, _LOAD_WEIGHTS,
                                                              _SATURATIONS, _PACKING, _PROTECT)]
    random.Random(seed).shuffle(grid)
    return base + [Setting(g.label, g.routing(extra)) for g in grid]


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
         profiles: Mapping[str, EfficiencyProfile] | None = None,
         learn: bool = False) -> tuple[dict, list[Trial]]:
    """Simulate candidates on ``workload`` (requests without targets get the
    given ones; with ``learn``, profiles learned online as the gateway does)
    and return the best routing dict and every trial, best first."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    workload = workload.with_default_slo(slo_ttft_ms, slo_tpot_ms)
    deadline = time.monotonic() + budget_s
    done: list[Trial] = []
    for setting in candidates(slo_ttft_ms, slo_tpot_ms, seed, objective)[:trials]:
        if done and time.monotonic() > deadline:
            break
        config = load_routing_config(setting.routing)
        result = simulate(specs, workload, config, profiles=profiles, seed=seed, learn=learn)
        done.append(Trial(setting.label, setting.routing, result, result.slo_attainment >= min_attainment))
    done.sort(key=lambda t: objective_key(objective, t))
    return done[0].routing, done
