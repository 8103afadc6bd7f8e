"""The load tester's own lag: the loop probe, the client-bound verdict, and a run that is client-bound."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from loadtests.config import DataSpec, LoadSpec, RunSpec
from loadtests.fake_server import FakeConfig, FakeOpenAI
from loadtests.lag import CLIENT_BOUND_SHARE, LoopLagProbe, judge
from loadtests.report import console_summary
from loadtests.runner import RunOutcome, run


def test_verdict_compares_the_larger_lag_with_the_smaller_median():
    # loop 1.0 ms, dispatch 0.5 ms against TTFT 100 ms and ITL 10 ms: 1.0 / 10 = 10 % > 5 %
    v = judge(1.0, 0.5, 100.0, 10.0)
    assert (v.measured, v.measured_ms, v.share, v.client_bound) == ("ITL p50", 10.0, pytest.approx(0.1), True)
    assert "CLIENT-BOUND" in v.describe() and "10.0% of ITL p50" in v.describe()
    # dispatch lag 1.5 ms against TTFT 100 ms, no ITL (one-token outputs): 1.5 %
    v = judge(0.2, 1.5, 100.0, None)
    assert (v.measured, v.share, v.client_bound) == ("TTFT p50", pytest.approx(0.015), False)
    assert v.describe().startswith("ok")
    # the limit itself passes
    assert not judge(CLIENT_BOUND_SHARE * 20, None, 20.0, None).client_bound
    assert judge(None, None, 100.0, 10.0).share is None
    assert judge(1.0, None, None, None).describe().startswith("not judged")


def test_probe_sees_a_loop_blocked_for_100_ms():
    async def go():
        async with LoopLagProbe(0.005) as probe:
            await asyncio.sleep(0.02)
            time.sleep(0.1)  # the loop cannot wake the probe meanwhile
            await asyncio.sleep(0.02)
        return probe.lags_s

    lags = asyncio.run(go())
    assert len(lags) >= 2
    assert max(lags) >= 0.09  # it was due at most 5 ms into the block


def _run(spec, fake, hog: bool):
    async def busy_client():  # work that starves the client's own loop, 20 ms at a time
        while True:
            time.sleep(0.02)
            await asyncio.sleep(0.001)

    async def go():
        task = asyncio.create_task(busy_client()) if hog else None
        try:
            async with httpx.AsyncClient(transport=fake.mock_transport()) as client:
                return await run(spec, client=client, progress=False)
        finally:
            if task:
                task.cancel()

    return asyncio.run(go())


def test_a_starved_client_says_it_was_client_bound_and_by_how_much():
    fake = FakeOpenAI(FakeConfig(ttft_s=0.01, itl_s=0.02, capacity=None))
    spec = RunSpec(base_url="http://fake", model="m", load=LoadSpec(arrival="constant", rate=50, requests=8),
                   data=DataSpec(prompt_tokens=16, output_tokens=4), timeout_s=10)
    s = _run(spec, fake, hog=True).summary
    assert s.ok == 8
    assert s.client_loop_lag_ms.count > 0
    assert s.client_lag.client_bound
    assert s.client_lag.share > CLIENT_BOUND_SHARE
    assert s.client_loop_lag_ms.p99 >= 10  # blocked 20 ms at a time
    assert "CLIENT-BOUND" in console_summary(RunOutcome(spec, [], s))
