"""Prompt token counts at the gateway, before a pool sees the request.

The router needs a request's prompt length to pick a pool. A model whose
pool loads a local tokenizer (``tokenizer.json`` in its model directory) is
counted exactly with the fast ``tokenizers`` library; any other model gets a
documented estimate of one token per four UTF-8 bytes. Chat messages add a
few tokens each for the template's role markers.
"""

from __future__ import annotations

import json

from pathlib import Path

BYTES_PER_TOKEN = 4
CHAT_TOKENS_PER_MESSAGE = 4


class TokenCounter:
    def __init__(self, tokenizer_file: Path | None = None):
        self._tok = None
        if tokenizer_file is not None and tokenizer_file.exists():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(tokenizer_file))

    @property
    def exact(self) -> bool:
        return self._tok is not None

    def count_text(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False).ids)
        return max(1, -(-len(text.encode()) // BYTES_PER_TOKEN))

    def count_messages(self, messages: list[dict[str, str]]) -> int:
        return sum(self.count_text(m["content"]) + CHAT_TOKENS_PER_MESSAGE for m in messages) + 1

    def count_prompt(self, prompt: dict) -> int:
        if "prompt_token_ids" in prompt:
            return len(prompt["prompt_token_ids"])
        if "messages" in prompt:
            tools = prompt.get("tools")  # the chat template renders them into the prompt
            return self.count_messages(prompt["messages"]) + (self.count_text(json.dumps(tools)) if tools else 0)
        return self.count_text(prompt["prompt"])


def counter_for_pool(engine: str, model: str) -> TokenCounter:
    """A counter for what a pool loads: exact for a real engine's local model
    directory, the estimate for emulated pools and hub ids."""
    if engine == "emulated":
        return TokenCounter()
    if model == "tiny-llama":
        from workers.tiny_model import ensure_tiny_model

        return TokenCounter(ensure_tiny_model() / "tokenizer.json")
    path = Path(model)
    return TokenCounter(path / "tokenizer.json" if path.is_dir() else None)
