"""Deterministic synthetic output text: one word of a fixed vocabulary per token.

The word stream is seeded by ``(seed, prompt)``, so the same request always
gets the same text. Words are drawn uniformly, so a token's log-probability
is known exactly (:func:`token_logprob`): the emulated engine reports it when
a request asks for ``logprobs``. Stop strings are honoured the way vLLM does by default:
the stop string itself is not emitted, and text that might be the start of a
stop string is held back until it cannot be.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence

from workers.engine import TokenLogprob, TopLogprob

VOCABULARY: tuple[str, ...] = (
    "the", "a", "model", "token", "energy", "joule", "batch", "watt", "chip",
    "router", "pool", "request", "stream", "latency", "memory", "cache", "rate",
    "signal", "north", "river", "stone", "light", "garden", "window", "paper",
    "quiet", "bright", "slow", "fast", "green", "small", "large", "and", "or",
    "of", "to", "in", "on", "with", "over", "under", "runs", "moves", "holds",
    "finds", "makes", "keeps", "turns", "waits", "serves", "measures", "counts",
)


#: Every word is drawn with probability 1/len(VOCABULARY): the exact log-probability of each token.
TOKEN_LOGPROB = -math.log(len(VOCABULARY))


def token_logprob(token: str, k: int) -> TokenLogprob:
    """The emulated sampler's true distribution at any position: uniform over the vocabulary, so the
    sampled token and its ``k - 1`` alternatives (next in vocabulary order, all tied) share one value."""
    word = token.lstrip(" ")
    space = token[: len(token) - len(word)]
    at = VOCABULARY.index(word)
    alternatives = [VOCABULARY[(at + i) % len(VOCABULARY)] for i in range(min(k, len(VOCABULARY)))]
    return TokenLogprob(token, TOKEN_LOGPROB, tuple(TopLogprob(space + w, TOKEN_LOGPROB) for w in alternatives))


class SyntheticText:
    """The output text of one request, produced token by token."""

    def __init__(self, seed: int | None, prompt: str | Sequence[int], stop: Sequence[str] = ()):
        key = f"{seed}\x00{prompt if isinstance(prompt, str) else list(prompt)}"
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._stop = tuple(s for s in stop if s)
        self._text = ""
        self._emitted = 0  # characters of _text already returned
        self.stopped = False
        self.last_token = ""  # the token the last next_token() generated, as the output spells it

    def next_token(self) -> str:
        """Generate one token and return the text that is now safe to emit.

        After a stop string appears, :attr:`stopped` is true and the returned
        text ends just before it.
        """
        if self.stopped:
            raise RuntimeError("the text already hit a stop string")
        word = self._rng.choice(VOCABULARY)
        self.last_token = word if not self._text else " " + word
        self._text += self.last_token
        cut = self._stop_index()
        if cut is not None:
            self.stopped = True
            return self._take(cut)
        return self._take(len(self._text) - self._held_back())

    def flush(self) -> str:
        """Text held back for a possible stop string, at the end of the output."""
        return "" if self.stopped else self._take(len(self._text))

    def _take(self, end: int) -> str:
        delta = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return delta

    def _stop_index(self) -> int | None:
        # Held-back text guarantees a stop string can only start after the emitted text.
        found = [i for i in (self._text.find(s, self._emitted) for s in self._stop) if i >= 0]
        return min(found) if found else None

    def _held_back(self) -> int:
        """Length of the longest suffix of the text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
