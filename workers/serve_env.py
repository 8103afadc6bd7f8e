"""Ray Serve settings of every hetserve replica, set through its ``runtime_env``.

Serve runs a replica's code on its own event loop in a second thread by
default, so each message of a response crosses threads twice
(``call_soon_threadsafe`` to Serve's loop, a wake-up there). hetserve's
replicas are asynchronous throughout (the gateway, the pool endpoints, the
engine adapters), so they run on Serve's loop: less gateway CPU per relayed
event where streams are few (docs/benchmarks.md, "The gateway alone").
They also run, with the engines they spawn, at the default CPU priority
rather than at Ray's niceness for workers (:data:`WORKER_PRIORITY_ENV`).
A value in the environment of the process that builds the app (``hetserve
serve``, ``hetserve config``) overrides the default.
"""

from __future__ import annotations

import os

#: Ray starts its worker processes at niceness 15, so that its own daemons (GCS,
#: raylet, dashboard) win the CPU. In a serving cluster the workers are the
#: service: the gateway, the pool replicas, the engine processes they spawn,
#: HAProxy. At 15, any process at the default priority on a node takes the CPU
#: from them with 28 times their weight. At 0, streams at 1 and 4 clients ran
#: 1.10x and 1.21x faster on the CPU engine (median of paired rounds), the other
#: cells alike (docs/benchmarks.md, "Ray's worker niceness"). The replicas ask
#: for it in their runtime_env (a cluster started elsewhere); a local cluster
#: starts every worker with it (``deploy.ingress.local_cluster_env``), HAProxy too.
WORKER_PRIORITY_ENV = {"RAY_worker_niceness": "0"}

REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", **WORKER_PRIORITY_ENV}


def with_replica_env(ray_actor_options: dict) -> dict:
    """``ray_actor_options`` with :data:`REPLICA_ENV` under the env vars it sets itself (those win)."""
    defaults = {k: os.environ.get(k, v) for k, v in REPLICA_ENV.items()}
    runtime_env = dict(ray_actor_options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**defaults, **(runtime_env.get("env_vars") or {})}
    return {**ray_actor_options, "runtime_env": runtime_env}
