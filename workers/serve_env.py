"""Ray Serve settings of every hetserve replica, set through its ``runtime_env``.

Serve runs a replica's code on its own event loop in a second thread by
default, so each message of a response crosses threads twice
(``call_soon_threadsafe`` to Serve's loop, a wake-up there). hetserve's
replicas are asynchronous throughout (the gateway, the pool endpoints, the
engine adapters), so they run on Serve's loop: less gateway CPU per relayed
event where streams are few (docs/benchmarks.md, "The gateway alone").
A value in the environment of the process that builds the app (``hetserve
serve``, ``hetserve config``) overrides the default.
"""

from __future__ import annotations

import os

REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


def with_replica_env(ray_actor_options: dict) -> dict:
    """``ray_actor_options`` with :data:`REPLICA_ENV` under the env vars it sets itself (those win)."""
    defaults = {k: os.environ.get(k, v) for k, v in REPLICA_ENV.items()}
    runtime_env = dict(ray_actor_options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**defaults, **(runtime_env.get("env_vars") or {})}
    return {**ray_actor_options, "runtime_env": runtime_env}
