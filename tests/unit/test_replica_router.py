"""Replica choice inside a pool follows running sequences, not Ray's request count."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from workers.replica_router import rank_replicas


@dataclass
class FakeReplica:
    replica_id: str
    routing_stats: dict = field(default_factory=dict)


def test_fewest_running_sequences_first():
    busy = FakeReplica("a", {"running": 60, "waiting": 4})
    light = FakeReplica("b", {"running": 3, "waiting": 0})
    mid = FakeReplica("c", {"running": 10, "waiting": 2})
    # Ray's queue lengths say the opposite: few long requests on "a".
    ranks = rank_replicas([busy, light, mid], {"a": 1, "b": 9, "c": 5}, random.Random(0))
    assert [r[0].replica_id for r in ranks] == ["b", "c", "a"]


def test_replicas_without_stats_fall_back_to_queue_length():
    reported = FakeReplica("a", {"running": 5})
    silent = FakeReplica("b")
    ranks = rank_replicas([reported, silent], {"b": 2}, random.Random(0))
    assert [r[0].replica_id for r in ranks] == ["b", "a"]


def test_ties_are_broken_at_random():
    replicas = [FakeReplica(str(i), {"running": 1}) for i in range(4)]
    firsts = {rank_replicas(replicas, {}, random.Random(seed))[0][0].replica_id for seed in range(20)}
    assert len(firsts) > 1
