"""The serving processes run at the default CPU priority, not at Ray's niceness 15 for workers.

Ray starts every worker process at niceness 15 so that its daemons win the
CPU; hetserve's replicas, the engine processes they spawn and HAProxy are
the service, so they run at 0 (``workers.serve_env.WORKER_PRIORITY_ENV``).
"""

from __future__ import annotations

import psutil
import pytest

pytestmark = pytest.mark.engine


def _serving_processes() -> dict[str, int]:
    """``pid title`` -> niceness of the session's gateway and pool replicas, vLLM's processes and HAProxy."""
    out = {}
    for p in psutil.Process().children(recursive=True):  # the session's local cluster was started here
        try:
            name, cmdline, nice = p.name(), p.cmdline(), p.nice()
        except psutil.Error:  # ended meanwhile
            continue
        title = " ".join(cmdline) or name
        if name == "haproxy":
            out[f"{p.pid} haproxy"] = nice  # its title is its binary's path, however long
        elif "ServeReplica:hetserve:" in title or "VLLM::" in title:
            out[f"{p.pid} {title[:60]}"] = nice
    return out


def test_the_gateway_the_pools_their_engines_and_haproxy_run_at_niceness_0(gateway_url):
    serving = _serving_processes()
    titles = " ".join(serving)
    for part in ("ServeReplica:hetserve:gateway", "ServeReplica:hetserve:cpu-vllm", "VLLM::EngineCore",
                 "VLLM::Worker", "haproxy"):
        assert part in titles, f"no {part} among this session's processes: {sorted(serving)}"
    assert all(nice == 0 for nice in serving.values()), serving
