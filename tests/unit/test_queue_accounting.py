"""Queue counts the predictor reads, kept by the gateway and the simulator, and
forecasts fed back when requests finish; ``hetserve routing`` against a fake gateway."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from fleet.config import load_fleet
from fleet.profiles import fleet_profiles
from gateway.responses import TEXT
from hetserve import routing_cli
from routing import build_router, load_routing_config
from sim import Workload, simulate
from sim.pools import build_pools
from sim.simulation import Simulation
from tests.unit.test_service import FLEET, MODEL, FakePools, make_service
from workers.errors import ContextLengthExceeded


def _with_default_router(service):
    router = build_router(load_routing_config({"policy": "slo-energy"}))
    service._router = lambda: router
    return service


async def test_gateway_counts_prefills_and_owed_tokens_and_hands_back_the_forecast():
    service, state, finished = make_service(FakePools())
    _with_default_router(service)
    state.profiles = fleet_profiles(FLEET.pools)  # modelled, as the gateway starts with
    body = json.dumps({"model": MODEL, "prompt": ["x", "y"], "max_tokens": 3, "stream": True}).encode()
    resp = await service.handle(TEXT, body, {}, "rid")
    rec = state.pools["a"].sent
    assert (rec.in_flight, rec.prefilling, rec.prefill_tokens, rec.decode_tokens) == (2, 0, 0, 6)
    snap = state.snapshot(MODEL)[0]
    assert snap.decode_tokens == 6 and snap.prompt_rate > 0 and snap.max_batch == 8
    assert snap.dynamic_watts > 0
    async for _ in resp.body_iterator:
        pass
    assert (rec.in_flight, rec.prefilling, rec.prefill_tokens, rec.decode_tokens) == (0, 0, 0, 0)
    assert finished[0].prediction is not None and finished[0].prediction.ttft_ms > 0


async def test_a_failure_before_the_first_token_undoes_the_prefill_counts():
    service, state, _ = make_service(FakePools(fail=ContextLengthExceeded("too long", param="prompt")))
    _with_default_router(service)
    with pytest.raises(ContextLengthExceeded):
        await service.handle(TEXT, json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2}).encode(), {}, "r")
    rec = state.pools["a"].sent
    assert (rec.in_flight, rec.prefilling, rec.prefill_tokens, rec.decode_tokens) == (0, 0, 0, 0)


def test_simulation_feeds_queues_and_residuals_and_reports_forecast_error():
    specs = load_fleet()[0].pools
    w = Workload.synthetic("meta-llama/Llama-3.1-8B-Instruct", 400, 10.0, seed=4).with_default_slo(1000, 100)
    sim = Simulation(w, build_pools(specs, w.models), load_routing_config({"policy": "slo-energy"})).run()
    for p in sim.pools:
        for load in (p.sent_total, *(r.sent for r in p.replicas)):
            assert (load.in_flight, load.prefilling, load.prefill_tokens, load.decode_tokens) == (0, 0, 0, 0)
    assert sim.router.predictor.factors("h100") != (1.0, 1.0)  # it learned from finished requests
    assert not np.isnan(sim.state.pred_ttft).any()
    r = simulate(specs, w, {"policy": "slo-energy"})
    err = r.predictor_error
    assert err.requests == 400 and 0 <= err.ttft.p50 <= err.ttft.p90 and err.tpot.p50 is not None
    assert simulate(specs, w, {"policy": "least-load"}).predictor_error is None


def test_routing_cli_checks_applies_and_reports_refusals(tmp_path, monkeypatch, capsys):
    good = tmp_path / "routing.yaml"
    good.write_text("policy: slo-cost\nslo: {ttft_ms: 800}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins: [{type: predicted-slo, parameters: {margn: 0.1}}]\nschedulingProfiles: []\n")
    assert routing_cli.routing_main(["check", str(bad)]) == 2
    assert f"{bad}: plugins[0]: parameters.margn" in capsys.readouterr().err
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization"), request.content))
        if request.headers.get("authorization") != "Bearer k":
            return httpx.Response(401, json={"error": {"message": "Incorrect or missing admin key"}})
        return httpx.Response(200, json=json.loads(request.content))

    real = httpx.Client
    monkeypatch.setattr(routing_cli.httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    assert routing_cli.routing_main(["apply", str(good), "--url", "http://gw", "--admin-key", "k"]) == 0
    method, path, _, content = seen[-1]
    assert (method, path) == ("PUT", "/admin/routing")
    assert json.loads(content) == {"policy": "slo-cost", "slo": {"ttft_ms": 800.0}}
    assert "policy: slo-cost" in capsys.readouterr().out
    assert routing_cli.routing_main(["apply", str(good), "--url", "http://gw", "--admin-key", "x"]) == 1
    assert "401" in capsys.readouterr().err
