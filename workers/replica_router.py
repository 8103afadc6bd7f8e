"""Choosing a replica inside a pool: fewest running sequences first.

Ray Serve's default router samples two replicas and compares how many
requests each has queued, capped by ``max_ongoing_requests``. For an LLM pool
a request is not a unit of work: one replica may hold 60 short sequences and
another 3 long ones. Each pool replica reports its engine's running and
waiting sequences through ``record_routing_stats``; this router ranks the
replicas by that load (ties broken at random), falling back to Ray's queue
length for replicas that have not reported yet.
"""

from __future__ import annotations

import random
from typing import Optional

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

#: How often replicas report routing stats (seconds).
STATS_PERIOD_S = 0.5


def replica_load(replica, queue_len: int | None) -> float:
    """Sequences a replica is busy with: its engine's report, else Ray's queue length."""
    stats = replica.routing_stats or {}
    if "running" in stats:
        return stats["running"] + stats.get("waiting", 0)
    return queue_len or 0


def rank_replicas(replicas: list, queue_lens, rng: random.Random = random) -> list[list]:
    """One rank per replica, least loaded first: Ray tries the first and moves
    on to the next only if that one rejects the request (it is full)."""
    ranked = sorted(replicas, key=lambda r: (replica_load(r, queue_lens.get(r.replica_id)), rng.random()))
    return [[r] for r in ranked]


class LeastSequencesRouter(FIFOMixin, RequestRouter):
    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: Optional[PendingRequest] = None,
    ) -> list[list[RunningReplica]]:
        return rank_replicas(candidate_replicas, self._replica_queue_len_cache)


def router_config() -> dict:
    return {
        "request_router_class": f"{__name__}:LeastSequencesRouter",
        "request_routing_stats_period_s": STATS_PERIOD_S,
    }
