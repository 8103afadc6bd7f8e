"""The gateway's ASGI fast path: completion POSTs go straight to the replica, everything else to FastAPI."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from gateway import app as gateway_app
from gateway.responses import CHAT, TEXT


class FakeGateway:
    """Stands for the replica's ``Gateway``: records what it was asked to complete."""

    def __init__(self):
        self.calls: list[tuple[str, bytes]] = []

    async def complete(self, kind: str, request: Request):
        body = await request.body()
        self.calls.append((kind, body))
        return JSONResponse({"kind": kind}, headers={"x-answered-by": "fast-path"})


@pytest.fixture
def setup(monkeypatch):
    fake = FakeGateway()
    monkeypatch.setattr(gateway_app.serve, "get_replica_context", lambda: SimpleNamespace(servable_object=fake))
    api = FastAPI()
    api.add_middleware(gateway_app._CompletionsFastPath)
    reached = []

    @api.post("/v1/completions")
    async def routed(request: Request):
        reached.append(request.url.path)
        return JSONResponse({"routed": True})

    @api.get("/v1/models")
    async def models():
        return {"object": "list", "data": []}

    return fake, reached, api


def test_completion_posts_reach_the_replica_with_their_kind_and_body(setup):
    fake, reached, api = setup
    client = TestClient(api)
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 200 and r.json() == {"kind": CHAT} and r.headers["x-answered-by"] == "fast-path"
    r = client.post("/v1/completions", content=b'{"prompt": "hi"}')
    assert r.json() == {"kind": TEXT}
    assert fake.calls == [(CHAT, b'{"model":"m","messages":[]}'), (TEXT, b'{"prompt": "hi"}')]
    assert reached == []  # FastAPI's route never ran


def test_other_methods_and_paths_go_through_fastapi(setup):
    fake, reached, api = setup
    client = TestClient(api)
    assert client.get("/v1/models").json() == {"object": "list", "data": []}
    assert client.get("/v1/completions").status_code == 405
    assert client.post("/v1/completions/extra").status_code == 404
    assert fake.calls == []


def test_a_root_path_is_stripped_before_matching(setup):
    fake, _, api = setup
    client = TestClient(api, root_path="/prefix")
    r = client.post("/prefix/v1/completions", content=b"{}")
    assert r.json() == {"kind": TEXT} and fake.calls == [(TEXT, b"{}")]


def test_hetserve_warnings_reach_the_process_stderr_when_serve_replaces_sys_stderr(monkeypatch, capfd):
    """Serve logging to files only swaps ``sys.stderr`` for its INFO logger, which the gateway's WARNING drops."""
    import io
    import logging

    logger = logging.getLogger("hetserve")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    replaced = io.StringIO()
    monkeypatch.setattr("sys.stderr", replaced)
    gateway_app._log_to_stderr()
    gateway_app._log_to_stderr()  # idempotent: one handler
    logging.getLogger("hetserve.gateway").warning("pool %s dropped", "h100")
    assert len(logger.handlers) == 1 and not logger.propagate
    assert "WARNING hetserve.gateway: pool h100 dropped" in capfd.readouterr().err
    assert replaced.getvalue() == ""
