"""FuriosaEngine against a fake ``furiosa_llm`` reproducing its documented interface.

The fake follows furiosa-llm's ``llm_engine.AsyncLLMEngine``:
``AsyncEngineArgs(model=..., devices=...)``,
``AsyncLLMEngine.from_engine_args(args)``, ``engine.tokenizer``,
``engine.max_model_len``,
``async generate(prompt, sampling_params, request_id)`` yielding
``RequestOutput(..., outputs=[CompletionOutput(index, text, token_ids, logprobs,
finish_reason)], finished, ...)`` and ``async abort(request_id)``.
With ``RequestOutputKind.DELTA`` each output holds only new text and tokens.
tests/contracts checks this interface against the real package.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import types
from dataclasses import dataclass, field

import pytest

from workers.engine import EngineRequest, SamplingParams
from workers.errors import ContextLengthExceeded, EngineStartError, InvalidRequest
from workers.furiosa_engine import FuriosaEngine


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL = 2


class FakeSamplingParams:
    """furiosa-llm's keyword-only SamplingParams (2026.x), with its own validation."""

    def __init__(self, *, n=1, temperature=1.0, top_p=1.0, max_tokens=16, stop=None,
                 ignore_eos=False, output_kind=RequestOutputKind.CUMULATIVE):
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.stop, self.ignore_eos, self.output_kind = stop or [], ignore_eos, output_kind


@dataclass
class CompletionOutput:
    """furiosa-llm's constructor order (logprobs before finish_reason)."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list | None
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    """furiosa-llm's constructor order; in DELTA mode num_output_tokens is this output's."""

    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    prompt_logprobs: list | None
    outputs: list[CompletionOutput]
    finished: bool
    num_output_tokens: int
    num_cached_tokens: int


class FakeTokenizer:
    """Whitespace tokenizer with a BOS token and a trivial chat template."""

    bos_token = "<s>"

    def encode(self, text, add_special_tokens=True):
        ids = [len(word) for word in text.split()]
        return ([1] if add_special_tokens else []) + ids

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False and add_generation_prompt is True
        body = " ".join(f"[{m['role']}] {m['content']}" for m in messages)
        return f"<s> {body} [assistant]"


@dataclass
class FakeEngine:
    """Streams each word of ``script`` as one token; stops on ``stop`` strings or max_tokens."""

    script: str = "the quick brown fox jumps over the lazy dog"
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    max_model_len: int = 64
    gate: asyncio.Event | None = None
    calls: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    request_ids: set = field(default_factory=set)

    async def generate(self, prompt, sampling_params, request_id):
        assert sampling_params.output_kind is RequestOutputKind.DELTA
        self.calls.append((prompt, sampling_params, request_id))
        self.request_ids.add(request_id)
        words = self.script.split()
        for i, word in enumerate(words):
            if self.gate is not None and i == 2:
                await self.gate.wait()
            await asyncio.sleep(0)
            text = word if i == 0 else " " + word
            reason = None
            if word in sampling_params.stop:
                text, reason = "", "stop"
            elif i + 1 == sampling_params.max_tokens:
                reason = "length"
            elif i + 1 == len(words):
                reason = "stop"
            completion = CompletionOutput(0, text, [100 + i], None, reason)
            yield RequestOutput(request_id, "", prompt["prompt_token_ids"], None, [completion],
                                reason is not None, 1, 0)
            if reason:
                break
        self.request_ids.discard(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)
        self.request_ids.discard(request_id)


@pytest.fixture
def furiosa_llm(monkeypatch):
    package = types.ModuleType("furiosa_llm")
    outputs = types.ModuleType("furiosa_llm.outputs")
    outputs.RequestOutputKind = RequestOutputKind
    package.outputs = outputs
    package.SamplingParams = FakeSamplingParams
    package.engine = FakeEngine()
    package.built_with = []

    @dataclass
    class AsyncEngineArgs:
        model: str
        devices: str | None = None
        tokenizer: str | None = None

    class AsyncLLMEngine:
        @classmethod
        def from_engine_args(cls, args):
            if args.model == "missing":
                raise FileNotFoundError("artifact not found: missing")
            package.built_with.append(args)
            return package.engine

    package.AsyncEngineArgs = AsyncEngineArgs
    package.AsyncLLMEngine = AsyncLLMEngine
    monkeypatch.setitem(sys.modules, "furiosa_llm", package)
    monkeypatch.setitem(sys.modules, "furiosa_llm.outputs", outputs)
    return package


async def started(**kwargs) -> FuriosaEngine:
    engine = FuriosaEngine("/models/llama-3.1-8b", devices="npu:0", **kwargs)
    await engine.start()
    return engine


def token_request(request_id, prompt_len, max_tokens):
    params = SamplingParams(max_tokens=max_tokens)
    return EngineRequest(request_id, prompt_token_ids=[1] * prompt_len, params=params)


async def collect(engine, request):
    return [delta async for delta in engine.generate(request)]


@pytest.mark.asyncio
async def test_missing_package_is_a_start_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "furiosa_llm", None)
    with pytest.raises(EngineStartError, match="furiosa-llm"):
        await FuriosaEngine("/models/x").start()


@pytest.mark.asyncio
async def test_load_failure_and_bad_engine_arg_are_start_errors(furiosa_llm):
    with pytest.raises(EngineStartError, match="could not load 'missing' on devices npu:1"):
        await FuriosaEngine("missing", devices="npu:1").start()
    with pytest.raises(EngineStartError, match="bogus"):
        await FuriosaEngine("/models/x", bogus=1).start()


@pytest.mark.asyncio
async def test_engine_args_pass_through(furiosa_llm):
    await started(tokenizer="/models/tokenizer")
    assert furiosa_llm.built_with[-1] == furiosa_llm.AsyncEngineArgs(
        model="/models/llama-3.1-8b", devices="npu:0", tokenizer="/models/tokenizer"
    )


@pytest.mark.asyncio
async def test_streams_text_deltas_with_cumulative_tokens_and_length_finish(furiosa_llm):
    engine = await started()
    request = EngineRequest("r1", prompt="hello there", params=SamplingParams(max_tokens=3, temperature=0.0))
    deltas = await collect(engine, request)
    assert [d.text for d in deltas] == ["the", " quick", " brown"]
    assert [d.output_tokens for d in deltas] == [1, 2, 3]
    assert {d.prompt_tokens for d in deltas} == {3}  # BOS + 2 words
    assert [d.finish_reason for d in deltas] == [None, None, "length"]
    prompt, params, request_id = furiosa_llm.engine.calls[0]
    assert prompt == {"prompt_token_ids": [1, 5, 5]}
    assert (params.n, params.max_tokens, params.temperature, request_id) == (1, 3, 0.0, "r1")
    assert furiosa_llm.engine.aborted == []
    stats = engine.stats()
    assert (stats.running, stats.prompt_tokens_total, stats.output_tokens_total) == (0, 3, 3)
    assert stats.requests_finished == 1


@pytest.mark.asyncio
async def test_stop_string_finishes_with_stop_and_counts_its_token(furiosa_llm):
    engine = await started()
    request = EngineRequest("r2", prompt_token_ids=[1, 2], params=SamplingParams(max_tokens=20, stop=["fox"]))
    deltas = await collect(engine, request)
    assert "".join(d.text for d in deltas) == "the quick brown"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].output_tokens == 4
    assert furiosa_llm.engine.calls[0][1].stop == ["fox"]


@pytest.mark.asyncio
async def test_cancelling_the_consumer_aborts_the_engine_request(furiosa_llm):
    furiosa_llm.engine.gate = asyncio.Event()  # hold generation after two tokens
    engine = await started()
    received = []

    async def consume():
        request = EngineRequest("r3", prompt="hi", params=SamplingParams(max_tokens=20))
        async for delta in engine.generate(request):
            received.append(delta)

    task = asyncio.create_task(consume())
    while len(received) < 2:
        await asyncio.sleep(0)
    assert engine.stats().running == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert furiosa_llm.engine.aborted == ["r3"]
    assert furiosa_llm.engine.request_ids == set()
    assert engine.stats().running == 0
    assert engine.stats().requests_finished == 0


@pytest.mark.asyncio
async def test_closing_the_stream_early_aborts(furiosa_llm):
    engine = await started()
    stream = engine.generate(EngineRequest("r4", prompt="hi", params=SamplingParams(max_tokens=20)))
    await stream.__anext__()
    await stream.aclose()
    assert furiosa_llm.engine.aborted == ["r4"]


@pytest.mark.asyncio
async def test_context_length_is_checked_before_the_engine_is_called(furiosa_llm):
    engine = await started()
    with pytest.raises(ContextLengthExceeded, match="exceeds the model's context of 64") as err:
        await collect(engine, token_request("r5", prompt_len=10, max_tokens=60))
    assert err.value.param == "max_tokens"
    with pytest.raises(ContextLengthExceeded) as err:
        await collect(engine, token_request("r6", prompt_len=64, max_tokens=1))
    assert err.value.param == "prompt"
    assert furiosa_llm.engine.calls == []
    assert engine.max_model_len == 64


@pytest.mark.asyncio
async def test_unsupported_parameters_are_invalid_requests(furiosa_llm):
    engine = await started()
    with pytest.raises(InvalidRequest) as err:
        await collect(engine, EngineRequest("r7", prompt="hi", params=SamplingParams(seed=3)))
    assert err.value.param == "seed"
    with pytest.raises(InvalidRequest, match="top_p"):
        await collect(engine, EngineRequest("r8", prompt="hi", params=SamplingParams(top_p=0.0)))
    with pytest.raises(InvalidRequest, match="neither"):
        await collect(engine, EngineRequest("r9"))


@pytest.mark.asyncio
async def test_chat_template_and_token_counts_use_the_model_tokenizer(furiosa_llm):
    engine = await started()
    rendered = engine.render_chat([{"role": "user", "content": "hi there"}])
    assert rendered == "<s> [user] hi there [assistant]"
    assert engine.count_tokens(rendered) == 5  # starts with BOS: none added
    assert engine.count_tokens("hi there") == 3  # raw prompt: BOS added
