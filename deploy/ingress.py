"""How clients reach the gateway: Ray Serve's HAProxy ingress, set on every Ray process.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Ray Serve runs HAProxy on each node in
place of its Python proxy actor and forwards HTTP straight to the gateway
replicas' own ports (direct ingress): no Ray object per response chunk. It
must be in the environment of the processes that start Ray (``ray start``,
or the driver of a local cluster). Measured against the default proxy in
docs/architecture.md and docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from workers.serve_env import WORKER_PRIORITY_ENV

RAY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}

#: A local cluster's gateway drains itself on SIGTERM (new requests get 503) before
#: Serve stops it, and no outside load balancer needs time to deregister it: Serve's
#: own 30 s stay-reachable period would only stretch every shutdown by 30 s.
LOCAL_DRAIN_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}

#: Listeners Ray gives fixed default ports: HAProxy's stats and metrics (8404,
#: 9101) and the fallback proxy HAProxy forwards to while no gateway replica is
#: up (8500; gRPC 9500). With a second Serve instance on the host, the first
#: two keep it from starting, and the fallback proxy's port is the *first*
#: instance's: HAProxy then hands requests to the other cluster's gateway. So a
#: local cluster takes free ports for all of them.
LISTENER_PORT_VARS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                      "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def free_port() -> int:
    """A loopback port free now (another process may take it before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_cluster_env() -> Iterator[None]:
    """The environment a local Ray cluster starts in (its processes inherit it): the
    ingress on, a short Serve drain, workers at the default CPU priority, HAProxy's
    listeners on free ports, unless the operator set them.

    Restored afterwards, so processes this one starts later (another gateway,
    ``ray start``) do not inherit ports already taken.
    """
    wanted = {**RAY_ENV, **LOCAL_DRAIN_ENV, **WORKER_PRIORITY_ENV, **{k: str(free_port()) for k in LISTENER_PORT_VARS}}
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
