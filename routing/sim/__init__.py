"""Offline simulation of the gateway's routing in virtual time (no Ray).

Pools step the emulated engine's batcher; arrivals are routed by the very
router the gateway builds from a routing config.
"""

from routing.sim.events import Arrival, Event, EventQueue, StepDone
from routing.sim.oracle import OracleBound, oracle_bound, solve_bound
from routing.sim.pools import ProfileBatcher, SimPool, build_pools
from routing.sim.profiles import (
    EngineFigures,
    OperatingPoint,
    engine_figures,
    fleet_profiles,
    modelled_profile,
    observe_finished,
    operating_point,
)
from routing.sim.results import PoolResult, RunResult, summarize
from routing.sim.simulation import Simulation
from routing.sim.workload import Workload
from routing.sim.run import simulate

__all__ = [
    "Arrival",
    "EngineFigures",
    "Event",
    "EventQueue",
    "OperatingPoint",
    "OracleBound",
    "PoolResult",
    "ProfileBatcher",
    "RunResult",
    "SimPool",
    "Simulation",
    "StepDone",
    "Workload",
    "build_pools",
    "engine_figures",
    "fleet_profiles",
    "modelled_profile",
    "observe_finished",
    "operating_point",
    "oracle_bound",
    "simulate",
    "solve_bound",
    "summarize",
]
