"""The engine adapter contract: one per engine kind (vllm, furiosa, emulated).

A pool replica owns exactly one adapter. The adapter turns an
:class:`EngineRequest` into a stream of :class:`EngineDelta` and reports
:class:`EngineStats`. Adapters raise the typed errors of :mod:`workers.errors`
for bad input; the gateway maps them to HTTP in one place.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from workers.errors import InvalidRequest
from workers.tool_calls import ExtractedToolCalls


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    # Honoured only by engines that advertise them (workers.spec.capabilities); the router sends
    # requests that set them nowhere else.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    top_k: int = 0  # vLLM's sampling extensions, off at these values
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    response_format: dict | None = None  # OpenAI's: {"type": "json_object"} or {"type": "json_schema", ...}
    logprobs: int | None = None  # None: none; k: each sampled token's log-probability and the k most likely
    tool_call_schema: dict | None = None  # a forced tool call: the output is compact JSON of this schema
    fit_context: bool = False  # the client set no limit: max_tokens shrinks to what the context leaves


def fitted(params: SamplingParams, prompt_tokens: int, max_model_len: int) -> SamplingParams:
    """``params`` with the output budget the engine runs: where the client set none (``fit_context``),
    ``max_tokens`` lowered to what the context leaves after the prompt, as OpenAI's and vLLM's servers
    do; otherwise (or with no room left at all) as it is, for the engine's context check to refuse."""
    room = max_model_len - prompt_tokens
    if params.fit_context and 0 < room < params.max_tokens:
        return dataclasses.replace(params, max_tokens=room)
    return params


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token's log-probability and the most likely tokens at its position (most likely first)."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(slots=True)
class EngineRequest:
    """One sequence to generate. ``n > 1`` is fanned out by the gateway."""

    request_id: str
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(slots=True)
class EngineDelta:
    """New output since the previous delta of the same request.

    ``prompt_tokens`` is set on every delta (cheap, and lets the relay merge
    deltas without special cases); ``output_tokens`` is cumulative.
    """

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None = None  # "stop" | "length" | None while running
    logprobs: list[TokenLogprob] | None = None  # one per new token, when the request asked for them


@dataclass(slots=True)
class EngineStats:
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0  # fraction used, 0..1
    prompt_tokens_total: int = 0
    output_tokens_total: int = 0
    requests_finished: int = 0


class EngineAdapter(abc.ABC):
    """Contract for an inference engine inside one pool replica."""

    #: "real" for a physical engine, "emulated" for a hardware-model engine.
    provenance: str = "real"

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; raise :class:`workers.errors.EngineStartError` if it cannot."""

    @abc.abstractmethod
    def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        """Stream deltas. Cancelling the iterator aborts the engine request."""

    @abc.abstractmethod
    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """Apply the model's chat template to OpenAI-style messages (and function ``tools``, where the
        engine has a tool-call parser)."""

    def extract_tool_calls(self, text: str, tools: list[dict]) -> ExtractedToolCalls:
        """The tool calls in a finished free ("auto") output; only engines with a tool-call parser."""
        raise InvalidRequest("this pool's engine has no tool-call parser", param="tools")

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Prompt tokens for ``text`` with the model's own tokenizer (or a documented estimate)."""

    @property
    @abc.abstractmethod
    def max_model_len(self) -> int:
        """Longest prompt + output the engine accepts."""

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        """Current load and cumulative counters."""

    async def check_health(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`workers.errors.EngineFailure` when the engine can serve no more (Serve then restarts the replica)."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release the engine."""
