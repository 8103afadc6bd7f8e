"""Routing through the live gateway: explain, live retuning, profiles learning, 429."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import ADMIN_KEY, EMULATED_MODEL, REAL_MODEL

pytestmark = pytest.mark.engine

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _set_policy(url: str, routing: dict) -> httpx.Response:
    return httpx.put(f"{url}/admin/routing", json=routing, headers=ADMIN, timeout=10)


def _restore_default(url: str) -> None:
    """Back to the embedded default fleet's routing (slo-energy)."""
    from fleet.config import load_fleet

    _set_policy(url, load_fleet(None)[0].routing.model_dump(mode="json", exclude_none=True))


def test_explain_ranks_pools_without_running(gateway_url):
    body = {"model": EMULATED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    before = httpx.get(f"{gateway_url}/v1/fleet?profiles=false").json()
    r = httpx.post(f"{gateway_url}/v1/routing/explain", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()
    assert {p["pool"] for p in out["ranked"]} | {d["pool"] for d in out["dropped"]} == {"h100", "rngd", "atom"}
    assert out["shape"]["max_new_tokens"] == 64 and out["reason"]
    # the default policy forecasts every pool: TTFT/TPOT and marginal joules
    assert out["policy"] in ("slo-energy", "slo-energy-shared", "best-outcome")
    for p in out["ranked"]:
        assert p["prediction"]["ttft_ms"] > 0 and p["prediction"]["marginal_j_per_token"] > 0
    after = httpx.get(f"{gateway_url}/v1/fleet?profiles=false").json()
    tokens = lambda f: sum(p["output_tokens"] for p in f["pools"])  # noqa: E731
    assert tokens(after) == tokens(before)


def test_finished_requests_list_the_forecast_they_were_routed_on(gateway_url):
    seq = httpx.get(f"{gateway_url}/v1/requests/recent?limit=1").json()["last_seq"]
    body = {"model": EMULATED_MODEL, "prompt": "x", "max_tokens": 16}
    assert httpx.post(f"{gateway_url}/v1/completions", json=body, timeout=30).status_code == 200
    mine = [r for r in httpx.get(f"{gateway_url}/v1/requests/recent?after={seq}").json()["requests"]
            if r["model"] == EMULATED_MODEL]
    assert mine and mine[-1]["predicted_ttft_ms"] > 0 and mine[-1]["predicted_tpot_ms"] > 0


def test_admin_routing_needs_the_key(gateway_url):
    r = httpx.put(f"{gateway_url}/admin/routing", json={"policy": "random"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_bad_routing_config_is_rejected_and_names_the_key(gateway_url):
    r = _set_policy(gateway_url, {"policy": "cheapest-please"})
    assert r.status_code == 400
    assert "policy" in r.json()["error"]["message"]


def test_live_retuning_changes_decisions_without_dropping_requests(gateway_url):
    async def run() -> list[str]:
        async with httpx.AsyncClient(timeout=60) as c:
            async def one(i: int):
                r = await c.post(
                    f"{gateway_url}/v1/completions",
                    json={"model": EMULATED_MODEL, "prompt": f"p{i}", "max_tokens": 40},
                )
                assert r.status_code == 200, r.text
                return r.headers["x-hetserve-pool"]

            tasks = [asyncio.create_task(one(i)) for i in range(12)]
            await asyncio.sleep(0.05)
            assert _set_policy(gateway_url, {"policy": "round-robin"}).status_code == 200
            first = await asyncio.gather(*tasks)
            rr = [await one(100 + i) for i in range(6)]
            return first, rr

    try:
        first, rr = asyncio.run(run())
        assert len(first) == 12
        # round-robin visits every pool that serves the model
        assert set(rr) == {"h100", "rngd", "atom"}
        assert httpx.get(f"{gateway_url}/admin/routing", headers=ADMIN).json()["policy"] == "round-robin"
    finally:
        _restore_default(gateway_url)


def test_efficiency_policy_names_joules_in_its_reason(gateway_url):
    try:
        assert _set_policy(gateway_url, {"policy": "efficiency"}).status_code == 200
        r = httpx.post(
            f"{gateway_url}/v1/completions", json={"model": EMULATED_MODEL, "prompt": "x", "max_tokens": 8}, timeout=30
        )
        assert r.status_code == 200
        assert "J/tok" in r.headers["x-hetserve-route-reason"]
    finally:
        _restore_default(gateway_url)


def test_profiles_learn_online(gateway_url):
    def samples() -> int:
        pools = httpx.get(f"{gateway_url}/v1/fleet").json()["pools"]
        prof = next(p for p in pools if p["name"] == "cpu-vllm")["profile"]
        return sum(c.get("online_samples", 0) for c in prof["cells"])

    before = samples()
    for _ in range(3):
        httpx.post(f"{gateway_url}/v1/completions", json={"model": REAL_MODEL, "prompt": "learn", "max_tokens": 16}, timeout=30)
    assert samples() == before + 3


def test_full_pool_answers_429_with_retry_after(gateway_url):
    # The emulated ATOM pool accepts 32 sequences; 40 long ones pinned to it overflow it.
    async def run():
        async with httpx.AsyncClient(timeout=120) as c:
            async def one(i: int):
                return await c.post(
                    f"{gateway_url}/v1/completions",
                    json={"model": EMULATED_MODEL, "prompt": f"fill {i}", "max_tokens": 300},
                    headers={"x-hetserve-pool-pin": "atom"},
                )

            return await asyncio.gather(*(one(i) for i in range(40)))

    responses = asyncio.run(run())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 32
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected, statuses
    assert int(rejected[0].headers["retry-after"]) >= 1
    assert rejected[0].json()["error"]["type"] == "rate_limit_error"
