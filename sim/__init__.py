"""Offline simulation of the gateway's routing in virtual time (no Ray).

Pools step the emulated engine's batcher; arrivals are routed by the very
router the gateway builds from a routing config.
"""

from sim.events import Arrival, Event, EventQueue, StepDone
from sim.oracle import OracleBound, oracle_bound, solve_bound
from sim.pools import ProfileBatcher, SimPool, build_pools
from sim.results import PoolResult, RunResult, summarize
from sim.simulation import Simulation
from sim.workload import Workload
from sim.run import simulate

__all__ = [
    "Arrival",
    "Event",
    "EventQueue",
    "OracleBound",
    "PoolResult",
    "ProfileBatcher",
    "RunResult",
    "SimPool",
    "Simulation",
    "StepDone",
    "Workload",
    "build_pools",
    "oracle_bound",
    "simulate",
    "solve_bound",
    "summarize",
]
