"""What `hetserve serve` says when a deployment fails: one line per pool."""

from __future__ import annotations

from gateway.server import DeploymentFailed, one_line

SERVE_MESSAGE = """The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or initial health check failing. See controller logs for details. Error:
ray::ServeReplica:hetserve:h100.initialize_and_get_metadata() (pid=123, ip=10.0.0.1, actor_id=abc)
  File "/x/ray/serve/_private/replica.py", line 1, in initialize_and_get_metadata
    raise RuntimeError(traceback.format_exc()) from None
RuntimeError: Traceback (most recent call last):
  File "/x/workers/pool.py", line 46, in __init__
    self.engine = make_engine(self.spec)
TypeError: EmulatedEngine.__init__() missing 1 required positional argument: 'max_batch'"""


def test_one_line_is_the_innermost_exception():
    assert one_line(SERVE_MESSAGE) == "TypeError: EmulatedEngine.__init__() missing 1 required positional argument: 'max_batch'"


def test_one_line_of_a_qualified_exception_and_of_plain_text():
    assert one_line("boom\nworkers.errors.EngineStartError: no furiosa-llm") == "workers.errors.EngineStartError: no furiosa-llm"
    assert one_line("\n  replica is not ready yet\nmore") == "replica is not ready yet"
    assert one_line("") == "failed (no message from Serve)"


def test_deployment_failed_keeps_each_pools_reason():
    exc = DeploymentFailed({"h100": "TypeError: x", "rngd": "no node"})
    assert exc.reasons == {"h100": "TypeError: x", "rngd": "no node"}
    assert str(exc) == "h100: TypeError: x; rngd: no node"
