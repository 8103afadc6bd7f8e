"""OpenAI response bodies and stream chunks, built as plain dicts (hot path)."""

from __future__ import annotations

import json
from typing import Any

CHAT = "chat"
TEXT = "text"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(kind: str, rid: str, created: int, model: str, choices: list[tuple[str, str]], use: dict) -> dict:
    """A whole (non-streamed) response; ``choices`` is ``[(text, finish_reason), ...]``."""
    if kind == CHAT:
        items = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": reason,
            }
            for i, (text, reason) in enumerate(choices)
        ]
        obj = "chat.completion"
    else:
        items = [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
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

    def delta(self, index: int, text: str, finish_reason: str | None) -> str:
        if self.kind == CHAT:
            delta: dict[str, Any] = {"content": text}
            if index not in self._started:
                self._started.add(index)
                delta = {"role": "assistant", "content": text}
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return f'data: {self._head},"choices":[{json.dumps(choice)}]{self._tail}\n\n'

    def usage(self, use: dict) -> str:
        return f'data: {self._head},"choices":[],"usage":{json.dumps(use)}}}\n\n'

    @staticmethod
    def done() -> str:
        return "data: [DONE]\n\n"
