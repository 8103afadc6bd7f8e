"""VLLMEngine's own load figures, over a fake ``AsyncLLM`` whose outputs the test releases one by one.

The adapter runs vLLM without its stat loggers (they cost the frontend about a
quarter of its CPU per token), so ``running``, ``waiting`` and the KV estimate
come from the requests it serves; these tests fail if a request is counted in
the wrong state, or never leaves it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from workers.engine import EngineRequest, SamplingParams
from workers.vllm_engine import VLLMEngine

BLOCKS, BLOCK_SIZE = 4, 16  # a KV cache of 64 tokens


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    logprobs: None = None


@dataclass
class Output:
    outputs: list[Completion]
    finished: bool


class FakeTokenizer:
    def encode(self, text, add_special_tokens=True):
        return [len(word) for word in text.split()]

    def __len__(self):
        return 1000


@dataclass
class FakeAsyncLLM:
    """``AsyncLLM`` as the adapter uses it; each request's outputs come from its own queue."""

    args: object
    streams: dict[str, asyncio.Queue] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)
    errored: bool = False

    def __post_init__(self):
        self.model_config = SimpleNamespace(max_model_len=256)
        self.vllm_config = SimpleNamespace(cache_config=SimpleNamespace(num_gpu_blocks=BLOCKS, block_size=BLOCK_SIZE))

    def get_tokenizer(self):
        return FakeTokenizer()

    async def generate(self, prompt, sampling, request_id):
        queue = self.streams.setdefault(request_id, asyncio.Queue())
        while True:
            out = await queue.get()
            yield out
            if out.finished:
                return

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        pass


@pytest.fixture
async def engine(monkeypatch):
    from vllm.v1.engine.async_llm import AsyncLLM

    monkeypatch.setattr(AsyncLLM, "from_engine_args", classmethod(lambda cls, args: FakeAsyncLLM(args)))
    adapter = VLLMEngine("tiny", max_model_len=256)
    await adapter.start()
    return adapter


def _request(request_id: str, words: int) -> EngineRequest:
    return EngineRequest(request_id, prompt=" ".join(["w"] * words), params=SamplingParams(max_tokens=8))


def _counts(engine: VLLMEngine) -> tuple[int, int, float]:
    s = engine.stats()
    return s.running, s.waiting, s.kv_cache_usage


async def _submitted(engine: VLLMEngine, request_id: str, words: int):
    """A request in the engine, its first delta awaited by a task: (the stream, that task)."""
    stream = engine.generate(_request(request_id, words))
    first = asyncio.create_task(anext(stream))
    while request_id not in engine._engine.streams:
        assert not first.done(), first.exception()  # the adapter refused it: fail, do not spin
        await asyncio.sleep(0)
    return stream, first


def _output(tokens: int, finished: bool = False) -> Output:
    return Output([Completion("x" * tokens, list(range(tokens)), "stop" if finished else None)], finished)


async def test_stat_logging_is_off_unless_the_fleet_turns_it_on(engine):
    assert engine._engine.args.disable_log_stats is True
    logged = VLLMEngine("tiny", disable_log_stats=False)  # the fixture's fake AsyncLLM still stands in
    await logged.start()
    assert logged._engine.args.disable_log_stats is False


async def test_a_request_waits_until_its_first_tokens_then_runs_until_it_ends(engine):
    fake = engine._engine
    a, first_a = await _submitted(engine, "a", 16)
    b, first_b = await _submitted(engine, "b", 8)
    # Both submitted, no output yet: waiting, holding their prompts in the KV cache.
    assert _counts(engine) == (0, 2, 24 / 64)

    await fake.streams["a"].put(_output(2))
    assert (await first_a).output_tokens == 2
    assert _counts(engine) == (1, 1, 26 / 64)

    await fake.streams["a"].put(_output(3, finished=True))
    delta = await anext(a)
    assert delta.finish_reason == "stop" and delta.output_tokens == 5
    with pytest.raises(StopAsyncIteration):
        await anext(a)
    assert _counts(engine) == (0, 1, 8 / 64)

    # A request cancelled before its first token leaves the waiting count and is aborted in the engine.
    first_b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first_b
    await b.aclose()
    assert fake.aborted == ["b"]
    assert _counts(engine) == (0, 0, 0.0)
    assert engine.stats().requests_finished == 1 and engine.stats().output_tokens_total == 5


async def test_a_running_request_closed_by_its_client_is_released_and_aborted(engine):
    stream, first = await _submitted(engine, "c", 40)
    await engine._engine.streams["c"].put(_output(4))
    await first
    assert _counts(engine) == (1, 0, 44 / 64)
    await stream.aclose()
    assert engine._engine.aborted == ["c"]
    assert _counts(engine) == (0, 0, 0.0)


async def test_kv_usage_is_capped_at_a_full_cache(engine):
    stream, first = await _submitted(engine, "d", 100)
    assert _counts(engine) == (0, 1, 1.0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await stream.aclose()
