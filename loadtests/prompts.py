"""Prompt text of a requested token length.

With a tokenizer (a ``tokenizers.Tokenizer``, a Hugging Face tokenizer, or a
path to a ``tokenizer.json``) the text is cut to the exact token count in
that tokenizer, before any chat template (the server's usage will count the
template's tokens too). Without one, a token is estimated as
:data:`CHARS_PER_TOKEN` characters of English words, the usual rule of thumb
for BPE vocabularies; the server's usage is then the ground truth.

Each request's text is drawn from its own seeded stream, so prompts differ
(no accidental prefix-cache hits) yet a run is reproducible. A shared prefix
gives every prompt the same first ``K`` tokens, to exercise prefix caching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHARS_PER_TOKEN = 4

_WORDS = (
    "time year people way day man thing woman life child world school state family "
    "student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money "
    "story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community "
    "name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason "
    "research girl guy moment air teacher force education energy river engine signal"
).split()
# Longest rounds of "add words, re-encode, cut" before giving up on exactness.
_MAX_ROUNDS = 8


class PromptFactory:
    """Builds prompts of a given token length, optionally behind a shared prefix."""

    def __init__(self, tokenizer: Any = None, seed: int = 0, shared_prefix_tokens: int = 0):
        self._tokenizer = load_tokenizer(tokenizer)
        self._seed = seed
        self._prefix = self.text(shared_prefix_tokens, stream=-1) if shared_prefix_tokens else ""
        self.shared_prefix_tokens = shared_prefix_tokens

    def prompt(self, index: int, tokens: int) -> str:
        """The prompt of request ``index``: the shared prefix, then unique text filling ``tokens``."""
        suffix_tokens = max(tokens - self.shared_prefix_tokens, 1)
        suffix = self.text(suffix_tokens, stream=index)
        return f"{self._prefix} {suffix}" if self._prefix else suffix

    def text(self, tokens: int, stream: int) -> str:
        """Text of ``tokens`` tokens drawn from the seeded stream ``stream``."""
        rng = np.random.default_rng([self._seed, stream + 1])
        if self._tokenizer is None:
            return _words(rng, tokens * CHARS_PER_TOKEN)
        return _exact_text(self._tokenizer, rng, tokens)

    def count(self, text: str) -> int:
        """Tokens in ``text``: exact with a tokenizer, else the estimate."""
        if self._tokenizer is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN))
        return len(_encode(self._tokenizer, text))


def load_tokenizer(tokenizer: Any) -> Any:
    """Accept a tokenizer object, a path to ``tokenizer.json`` (or its folder), or None."""
    if tokenizer is None or not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from tokenizers import Tokenizer

    path = Path(tokenizer)
    if path.is_dir():
        path = path / "tokenizer.json"
    return Tokenizer.from_file(str(path))


def _words(rng: np.random.Generator, chars: int) -> str:
    """Random words, about ``chars`` characters long."""
    # Words average ~5.5 characters with their space; draw enough, then trim.
    picks = rng.integers(0, len(_WORDS), size=chars // 3 + 1)
    text = " ".join(_WORDS[i] for i in picks)
    return text[:chars].rstrip() or _WORDS[picks[0]]


def _exact_text(tokenizer: Any, rng: np.random.Generator, tokens: int) -> str:
    """Words cut to exactly ``tokens`` tokens (as near as the tokenizer allows)."""
    ids = _encode(tokenizer, _words(rng, tokens * (CHARS_PER_TOKEN + 2)))
    for _ in range(_MAX_ROUNDS):
        while len(ids) < tokens:
            ids += _encode(tokenizer, " " + _words(rng, (tokens - len(ids)) * (CHARS_PER_TOKEN + 2)))
        text = tokenizer.decode(ids[:tokens])
        ids = _encode(tokenizer, text)
        if len(ids) == tokens:
            break
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(encoded, "ids", encoded))
