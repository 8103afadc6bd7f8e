"""What crosses the boundary between the gateway and a pool replica.

The gateway sends a ``PoolRequest`` (one sequence: ``n > 1`` is fanned out
by the gateway) and reads ``RelayItem``s back, both over the replica's
internal HTTP endpoint (``workers.wire`` has their bytes); it polls
``ReplicaStats`` through Ray Serve.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from workers.engine import SamplingParams, TokenLogprob
from workers.tool_calls import ToolCall


@dataclass(slots=True)
class PoolRequest:
    request_id: str
    params: SamplingParams
    messages: list[dict[str, Any]] | None = None  # chat: the replica renders its engine's template
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    whole: bool = False  # non-streaming: one item with the whole output
    progress_s: float | None = None  # whole: an empty progress item at most this often while tokens come
    trace: dict[str, str] | None = None  # W3C trace context carrier
    tools: list[dict[str, Any]] | None = None  # chat: OpenAI's function tools (workers.tool_calls)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


@dataclass(slots=True)
class ReplicaStats:
    """One replica's counters; polls add power and provenance (``None`` otherwise)."""

    replica: str
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    prompt_tokens_total: int = 0
    output_tokens_total: int = 0
    requests_finished: int = 0
    energy_total_j: float = 0.0
    energy_attributed_j: float = 0.0
    max_model_len: int | None = None
    watts: float | None = None
    power_source: str | None = None
    power_provenance: str | None = None
    engine_provenance: str | None = None
    endpoint: str | None = None  # the replica's internal HTTP endpoint (workers.http_endpoint)

    def merged_over(self, older: "ReplicaStats | None") -> "ReplicaStats":
        """These counters, with the power fields of ``older`` where these have none."""
        if older is None:
            return self
        keep = {f: getattr(older, f) for f in _POLLED if getattr(self, f) is None}
        return dataclasses.replace(self, **keep) if keep else self


_POLLED = ("watts", "power_source", "power_provenance", "engine_provenance", "endpoint")


@dataclass(slots=True)
class Telemetry:
    """On a request's last item: its attributed energy and the replica's counters.

    ``first_token_s``: seconds from the replica taking the request to the engine's first output, on a
    whole (non-streamed) answer, whose first item the gateway sees only at the end (None on a stream)."""

    energy_j: float
    engine_s: float
    stats: ReplicaStats
    first_token_s: float | None = None


class RelayItem(NamedTuple):
    text: str
    prompt_tokens: int
    output_tokens: int  # cumulative
    finish_reason: str | None
    telemetry: Telemetry | None = None  # the last item only
    logprobs: list[TokenLogprob] | None = None  # one per token of ``text``, when the request asked for them
    tool_calls: list[ToolCall] | None = None  # the calls found in a tool request's (whole) output
