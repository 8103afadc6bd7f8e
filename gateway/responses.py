"""OpenAI response bodies and stream chunks, built as plain dicts (hot path)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workers.engine import TokenLogprob, TopLogprob
from workers.tool_calls import ToolCall

CHAT = "chat"
TEXT = "text"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True, slots=True)
class Choice:
    """One whole choice: its text, why it ended, and its tokens' log-probabilities when asked for."""

    text: str
    finish_reason: str
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] | None = None


def _alternative(t: TopLogprob) -> dict[str, Any]:
    return {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}


def chat_logprobs(logprobs: list[TokenLogprob] | None) -> dict | None:
    """OpenAI's chat ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}``."""
    if logprobs is None:
        return None
    content = [
        {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
         "top_logprobs": [_alternative(a) for a in t.top]}
        for t in logprobs
    ]  # fmt: skip
    return {"content": content, "refusal": None}


def text_logprobs(logprobs: list[TokenLogprob] | None, offset: int = 0) -> dict | None:
    """The completions API's ``logprobs`` (tokens, token_logprobs, top_logprobs, text_offset from ``offset``)."""
    if logprobs is None:
        return None
    offsets = []
    for t in logprobs:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in logprobs],
        "token_logprobs": [t.logprob for t in logprobs],
        "top_logprobs": [{a.token: a.logprob for a in t.top} for t in logprobs],
        "text_offset": offsets,
    }


def _message(text: str, tool_calls: list[ToolCall] | None) -> dict[str, Any]:
    if not tool_calls:
        return {"role": "assistant", "content": text, "refusal": None}
    calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in tool_calls]
    return {"role": "assistant", "content": text or None, "refusal": None, "tool_calls": calls}


def completion_body(kind: str, rid: str, created: int, model: str, choices: list[Choice], use: dict) -> dict:
    """A whole (non-streamed) response."""
    if kind == CHAT:
        items = [
            {
                "index": i,
                "message": _message(c.text, c.tool_calls),
                "logprobs": chat_logprobs(c.logprobs),
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(choices)
        ]
        obj = "chat.completion"
    else:
        items = [
            {"index": i, "text": c.text, "logprobs": text_logprobs(c.logprobs), "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ]
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": items, "usage": use}


class ChunkWriter:
    """Encodes SSE events for one streamed response."""

    def __init__(self, kind: str, rid: str, created: int, model: str, include_usage: bool):
        self.kind = kind
        self.include_usage = include_usage
        obj = "chat.completion.chunk" if kind == CHAT else "text_completion"
        # The JSON before "choices" is the same in every chunk: encode it once.
        self._head = json.dumps({"id": rid, "object": obj, "created": created, "model": model})[:-1]
        self._tail = ',"usage":null}' if include_usage else "}"
        self._started: set[int] = set()
        self._offsets: dict[int, int] = {}  # per choice: characters of its tokens so far (text_offset)

    def delta(
        self, index: int, text: str, finish_reason: str | None, logprobs: list[TokenLogprob] | None = None,
        tool_calls: list[ToolCall] | None = None,
    ) -> str:
        if self.kind == CHAT:
            delta: dict[str, Any] = {"content": text}
            if index not in self._started:
                self._started.add(index)
                delta = {"role": "assistant", "content": text}
            if tool_calls:
                delta["content"] = text or None
                delta["tool_calls"] = [
                    {"index": k, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for k, c in enumerate(tool_calls)
                ]
            lps = chat_logprobs(logprobs)
            choice = {"index": index, "delta": delta, "logprobs": lps, "finish_reason": finish_reason}
        else:
            lps = None
            if logprobs is not None:
                offset = self._offsets.get(index, 0)
                lps = text_logprobs(logprobs, offset)
                self._offsets[index] = offset + sum(len(t.token) for t in logprobs)
            choice = {"index": index, "text": text, "logprobs": lps, "finish_reason": finish_reason}
        return f'data: {self._head},"choices":[{json.dumps(choice)}]{self._tail}\n\n'

    def usage(self, use: dict) -> str:
        return f'data: {self._head},"choices":[],"usage":{json.dumps(use)}}}\n\n'

    @staticmethod
    def done() -> str:
        return "data: [DONE]\n\n"
