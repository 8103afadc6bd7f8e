"""Calibration sweeps against a fake gateway, and the hardware model's prediction."""

from __future__ import annotations

import asyncio
import io
import json
import time

import httpx
import pytest

from calibration.cli import build_parser, calibrate_main, run_calibration
from calibration.client import GatewayClient
from calibration.profile import build_profile
from calibration.report import summary
from calibration.sweep import (
    INFEASIBLE,
    OK,
    SKIPPED,
    default_batch_sizes,
    default_prompt_lengths,
    model_predictor,
    sweep_pool,
)
from fleet.api import PoolView
from routing import EfficiencyProfile
from workers.errors import ContextLengthExceeded
from workers.hardware import decode_cost, get_hardware, get_model, power_watts, prefill_cost
from workers.hardware.predict import model_key_for, predict

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


class FakeGateway:
    """Serves /v1/fleet and streaming completions with known timing and energy.

    Every completion waits ``ttft_s``, then ``token_s`` per token; when it ends
    the pool's counters move like the real ledger's: ``attributed_j_per_token``
    per output token above idle, and idle draw ``idle_w`` over wall time.
    """

    def __init__(self, pools: dict[str, dict], *, ttft_s=0.004, token_s=0.0005,
                 attributed_j_per_token=0.5, idle_w=100.0, api_key=None):
        self.t0 = time.perf_counter()
        self.ttft_s, self.token_s = ttft_s, token_s
        self.a, self.idle_w, self.api_key = attributed_j_per_token, idle_w, api_key
        self.pools = {}
        for name, over in pools.items():
            self.pools[name] = {
                "name": name, "hardware": "h100", "engine": "emulated", "emulated": True,
                "models": [LLAMA], "replicas": 1, "healthy": True, "in_flight": 0, "running": 0,
                "waiting": 0, "capacity": 8, "max_seq_len": 1024, "price_per_hour": 2.5,
                "output_tokens": 0, "prompt_tokens": 0, "energy_joules": 0.0,
                "energy_total_joules": 0.0, "watts": self.idle_w, "power_source": "modelled",
                "power_provenance": "modelled", **over,
            }
        self.attributed = {name: 0.0 for name in pools}
        self.completions: list[tuple[str, int, int]] = []  # (pool, prompt tokens, max_tokens)
        self.refused = 0

    def refresh(self, name: str) -> None:
        p = self.pools[name]
        p["energy_joules"] = self.attributed[name]
        p["energy_total_joules"] = self.attributed[name] + self.idle_w * (time.perf_counter() - self.t0)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "bad key", "invalid_api_key")
        if request.method == "GET" and request.url.path == "/v1/fleet":
            return httpx.Response(200, json={"policy": "least-load", "pools": list(self.pools.values())})
        assert request.url.path == "/v1/completions"
        body = json.loads(request.content)
        name = request.headers["x-hetserve-pool-pin"]
        if name not in self.pools:
            return _error(400, f"no pool named {name!r}", None)
        pool = self.pools[name]
        assert body["ignore_eos"] is True and body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        prompt, max_tokens = body["prompt"], body["max_tokens"]
        assert all(isinstance(t, int) and 100 <= t < 1000 for t in prompt)
        if len(prompt) + max_tokens > pool["max_seq_len"]:
            self.refused += 1
            return _error(400, "This model's maximum context length is ...", "context_length_exceeded")
        self.completions.append((name, len(prompt), max_tokens))
        return httpx.Response(200, headers={"x-hetserve-pool": name, "content-type": "text/event-stream"},
                              content=self._stream(name, len(prompt), max_tokens))

    async def _stream(self, name: str, n_prompt: int, n_out: int):
        pool = self.pools[name]
        pool["in_flight"] += 1
        try:
            await asyncio.sleep(self.ttft_s)
            for i in range(n_out):
                if i:
                    await asyncio.sleep(self.token_s)
                chunk = {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": " w"}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
        finally:
            pool["in_flight"] -= 1
        pool["output_tokens"] += n_out
        pool["prompt_tokens"] += n_prompt
        self.attributed[name] += self.a * n_out
        self.refresh(name)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
        yield f'data: {{"id":"cmpl-1","choices":[],"usage":{json.dumps(usage)}}}\n\n'.encode()
        yield b"data: [DONE]\n\n"


def _error(status: int, message: str, code: str | None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error",
                                                  "param": None, "code": code}})


async def _sweep(fake: FakeGateway, name: str = "h100", **kw):
    client = GatewayClient("http://gw", transport=fake.transport())
    try:
        pool = (await client.fleet())[name]
        kw.setdefault("log", lambda text: None)
        return await sweep_pool(client, pool, **kw)
    finally:
        await client.aclose()


# -- grids -------------------------------------------------------------------------


def test_default_batch_sizes_are_powers_of_two_up_to_capacity_and_the_last_bucket():
    assert default_batch_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_batch_sizes(48) == [1, 2, 4, 8, 16, 32]
    assert default_batch_sizes(1000) == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_default_prompts_fill_each_sequence_bucket():
    assert default_prompt_lengths(131072, 64) == [64, 192, 448, 960, 1984, 4032, 8128, 16320, 32704]
    assert default_prompt_lengths(2048, 200) == [56, 312, 824, 1848, 3896, 7992, 16184, 32568]


# -- the sweep -----------------------------------------------------------------------


async def test_sweep_measures_every_cell_and_energy_from_counter_differences():
    fake = FakeGateway({"h100": {"max_seq_len": 4096}})
    sweep = await _sweep(fake, batch_sizes=[1, 2, 4], prompt_lengths=[120, 248], output_tokens=8)
    assert [(c.batch, c.prompt_tokens, c.status) for c in sweep.cells] == [
        (1, 120, OK), (2, 120, OK), (4, 120, OK), (1, 248, OK), (2, 248, OK), (4, 248, OK)]
    # warm-up (16 prompt tokens) then batch × cell requests, prompts of exact length, pinned
    assert fake.completions[0][:2] == ("h100", 16)
    assert sorted(fake.completions[1:]) == sorted([("h100", 120, 8)] * 7 + [("h100", 248, 8)] * 7)
    for c in sweep.cells:
        assert c.requests == c.batch and c.tokens == 8 * c.batch
        assert c.j_per_token == pytest.approx(0.5)  # exact: attributed counter / tokens
        assert c.ttft_ms >= 4.0
        assert c.tpot_ms > 0  # the fake's 0.5 ms is a floor a busy machine stretches; no upper bound
        assert c.throughput_tok_s == pytest.approx(c.tokens / c.wall_s)
        # idle 100 W plus 0.5 J per token over the cell's window
        assert 100.0 <= c.watts <= 100.0 + 0.5 * c.throughput_tok_s * 1.01
        assert c.cost_per_mtok == pytest.approx(2.5 / 3600 / c.throughput_tok_s * 1e6)
    assert not sweep.warnings


async def test_a_refused_length_is_infeasible_and_longer_prompts_are_not_sent():
    fake = FakeGateway({"atom": {"max_seq_len": 1024}})
    sweep = await _sweep(fake, "atom", batch_sizes=[1, 2], output_tokens=8)
    # default prompts: buckets 128..1024 measured, 2048 probed once, the rest marked
    status = {(c.batch, c.seq_len): c.status for c in sweep.cells}
    assert [s for (b, s), st in status.items() if st == OK and b == 1] == [128, 256, 512, 1024]
    assert all(st == INFEASIBLE for (b, s), st in status.items() if s >= 2048)
    assert {s for (b, s) in status} == {128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768}
    assert fake.refused == 1  # the probe at batch 1 only

    sweep = await _sweep(fake, "atom", batch_sizes=[1], prompt_lengths=[100, 3000, 20000], output_tokens=8)
    assert [c.status for c in sweep.cells] == [OK, INFEASIBLE, INFEASIBLE]
    assert "context length" in sweep.cells[1].reason
    assert "already refused" in sweep.cells[2].reason
    assert fake.refused == 2

    profile = build_profile(sweep)
    assert profile.lookup(1, 3008).feasible is False
    assert profile.lookup(1, 20008).feasible is False
    assert profile.lookup(1, 108).feasible is True


async def test_the_profile_written_is_calibrated_and_loads(tmp_path):
    fake = FakeGateway({"h100": {"max_seq_len": 512}, "cpu": {"emulated": False, "engine": "vllm",
                                                                "hardware": "cpu", "models": ["tiny-llama"]}})
    args = build_parser().parse_args([
        "--all", "--out", str(tmp_path), "--batch-sizes", "1,2", "--output-tokens", "8", "--no-progress",
        "--verbose",
    ])
    out, err = io.StringIO(), io.StringIO()
    assert await run_calibration(args, transport=fake.transport(), stdout=out, stderr=err) == 0
    for name, model in (("h100", LLAMA), ("cpu", "tiny-llama")):
        profile = EfficiencyProfile.load(tmp_path / f"{name}.json")
        assert (profile.pool, profile.model) == (name, model)
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        cells = list(profile.cells())
        assert {c.provenance for c in cells} == {"calibrated"}
    h100 = EfficiencyProfile.load(tmp_path / "h100.json")
    cell = h100.lookup(2, 256)
    assert (cell.batch, cell.seq_len, cell.samples, cell.feasible) == (2, 256, 2, True)
    assert cell.j_per_token == pytest.approx(0.5)
    assert h100.lookup(1, 1024).feasible is False  # the probe past max_seq_len 512
    assert h100.lookup(1, 4096).feasible is False
    text = out.getvalue()
    assert "h100 (h100, emulated)" in text and "cpu (cpu, vllm)" in text
    # the emulated pool is compared with the hardware model, the real one is not
    h100_part, cpu_part = text.split("cpu (cpu, vllm)")
    assert "calibrated / hardware model" in h100_part and "calibrated / hardware model" not in cpu_part


async def test_cells_estimated_too_slow_are_skipped_and_left_out_of_the_profile():
    fake = FakeGateway({"h100": {"max_seq_len": 4096}})
    sweep = await _sweep(fake, batch_sizes=[1, 2], prompt_lengths=[56, 120], output_tokens=8,
                         max_cell_s=1e-6)
    assert [c.status for c in sweep.cells] == [OK, SKIPPED, SKIPPED, SKIPPED]
    assert "max-cell-s" in sweep.cells[1].reason
    assert "neighbouring cell was skipped" in sweep.cells[3].reason
    assert [(c.batch, c.seq_len) for c in build_profile(sweep).cells()] == [(1, 128)]

    # the first length past the pool's max_seq_len is probed whatever the estimates say
    fake.pools["h100"]["max_seq_len"] = 512
    sweep = await _sweep(fake, batch_sizes=[1, 2], prompt_lengths=[56, 248, 1016, 2040], output_tokens=8,
                         max_cell_s=1e-6)
    assert [(c.batch, c.prompt_tokens, c.status) for c in sweep.cells] == [
        (1, 56, OK), (2, 56, SKIPPED), (1, 248, SKIPPED), (2, 248, SKIPPED),
        (1, 1016, INFEASIBLE), (2, 1016, INFEASIBLE), (1, 2040, INFEASIBLE), (2, 2040, INFEASIBLE)]
    assert fake.refused == 1

    sweep = await _sweep(fake, batch_sizes=[1, 2], prompt_lengths=[56], output_tokens=8, time_budget_s=1e-6)
    assert sweep.cells[0].status == OK  # nothing to estimate from yet
    assert sweep.cells[1].status == SKIPPED and "time budget" in sweep.cells[1].reason


async def test_a_busy_pool_is_warned_about():
    fake = FakeGateway({"h100": {"in_flight": 3}})
    sweep = await _sweep(fake, batch_sizes=[1], prompt_lengths=[56], output_tokens=4)
    assert sweep.warnings and "not idle" in sweep.warnings[0]


async def test_api_key_is_sent_and_usage_errors_return_2(tmp_path):
    fake = FakeGateway({"h100": {}}, api_key="sekret")
    args = build_parser().parse_args(["--pool", "h100", "--out", str(tmp_path), "--batch-sizes", "1",
                                      "--prompt-lengths", "10", "--output-tokens", "4", "--no-progress",
                                      "--api-key", "sekret"])
    assert await run_calibration(args, transport=fake.transport(), stdout=io.StringIO(), stderr=io.StringIO()) == 0
    args.pool = ["nope"]
    err = io.StringIO()
    assert await run_calibration(args, transport=fake.transport(), stdout=io.StringIO(), stderr=err) == 2
    assert "no pool named nope" in err.getvalue()
    assert calibrate_main([]) == 2  # neither --pool nor --all


async def test_emulated_cells_carry_the_models_prediction():
    fake = FakeGateway({"h100": {"capacity": 4}})
    pool = PoolView.model_validate(fake.pools["h100"])
    predictor = model_predictor(pool)
    assert predictor is not None
    sweep = await _sweep(fake, batch_sizes=[1, 4], prompt_lengths=[56], output_tokens=8, predictor=predictor)
    for c in sweep.cells:
        expected = predict("h100", "llama-3.1-8b", c.batch, 56, 8, max_batch=4)
        assert c.ratio("throughput_tok_s") == pytest.approx(c.throughput_tok_s / expected.throughput_tok_s)
        assert c.ratio("j_per_token") == pytest.approx(0.5 / expected.j_per_token)
    assert "calibrated / hardware model" in summary(sweep)
    assert model_predictor(PoolView.model_validate({**fake.pools["h100"], "emulated": False})) is None


# -- predict -------------------------------------------------------------------------


def test_predict_one_sequence_is_its_steps_summed():
    hw, model = get_hardware("h100"), get_model("llama-3.1-8b")
    steps = [prefill_cost(hw, model, [100]), decode_cost(hw, model, 1, 101), decode_cost(hw, model, 1, 102)]
    p = predict("h100", "llama-3.1-8b", 1, 100, 3)
    assert p.steps == 3
    assert p.duration_s == pytest.approx(sum(s.duration_s for s in steps))
    assert p.ttft_s == pytest.approx(steps[0].duration_s)
    assert p.tpot_s == pytest.approx((steps[1].duration_s + steps[2].duration_s) / 2)
    energy = sum(power_watts(hw, s.utilisation) * s.duration_s for s in steps)
    assert p.energy_j == pytest.approx(energy)
    assert p.attributed_energy_j == pytest.approx(energy - hw.idle_watts * p.duration_s)
    assert p.throughput_tok_s == pytest.approx(3 / p.duration_s)
    assert p.j_per_token == pytest.approx(p.attributed_energy_j / 3)
    assert p.watts == pytest.approx(energy / p.duration_s)


def test_predict_queues_past_max_batch_and_refuses_what_cannot_run():
    one = predict("h100", "llama-3.1-8b", 1, 100, 3)
    two = predict("h100", "llama-3.1-8b", 2, 100, 3, max_batch=1)  # one after the other
    assert two.duration_s == pytest.approx(2 * one.duration_s)
    assert two.ttft_s == pytest.approx((one.ttft_s + one.duration_s + one.ttft_s) / 2)
    assert two.throughput_tok_s == pytest.approx(one.throughput_tok_s)
    with pytest.raises(ContextLengthExceeded):
        predict("atom", "llama-3.1-8b", 1, 8192, 64)  # atom's compiled limit is 8192
    assert model_key_for(LLAMA) == "llama-3.1-8b"
    assert model_key_for("tiny-llama") == "tiny-llama"
    assert model_key_for("gpt-4") is None
