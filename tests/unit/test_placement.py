"""The pre-deploy check: pools no node can hold are named with what they lack."""

from __future__ import annotations

from fleet.config import parse_fleet
from deploy.placement import replica_demand, unplaceable

POOL = {"hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": ["m"]}


def _pools(*resources):
    fleet = parse_fleet({"pools": [{**POOL, "name": f"p{i}", "resources": r} for i, r in enumerate(resources)]})
    return fleet.pools


def test_demand_uses_ray_resource_names():
    (pool,) = _pools({"CPU": 1, "GPU": 0.5, "h100": 1, "FURIOSA": 0})
    assert replica_demand(pool) == {"CPU": 1.0, "GPU": 0.5, "h100": 1.0}


def test_a_replica_needs_everything_on_one_node():
    pools = _pools({"GPU": 1, "h100": 1}, {"FURIOSA": 2}, {})
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8, "GPU": 1}},
        {"Alive": True, "Resources": {"CPU": 8, "h100": 1, "FURIOSA": 1}},
    ]
    reasons = unplaceable(pools, nodes)
    assert set(reasons) == {"p0", "p1"}  # split across nodes does not count; 1 of 2 FURIOSA is not enough
    assert reasons["p0"] == "no node of the cluster has GPU: 1, h100: 1 for one replica (nodes offering some of it: GPU, h100)"
    assert "FURIOSA: 2" in reasons["p1"]


def test_dead_nodes_do_not_count():
    pools = _pools({"RBLN": 1})
    nodes = [{"Alive": False, "Resources": {"RBLN": 4}}, {"Alive": True, "Resources": {"CPU": 2}}]
    assert unplaceable(pools, nodes) == {"p0": "no node of the cluster has RBLN: 1 for one replica (no node offers any of it)"}


def test_placeable_fleet_has_no_reasons():
    assert unplaceable(_pools({"CPU": 1}, {}), [{"Alive": True, "Resources": {"CPU": 1}}]) == {}
