"""What the router may know about a request before it runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestShape:
    """The routing-relevant shape of one API request.

    ``sequences`` is ``len(prompts) * n``: the number of sequences the request
    adds to a pool's running batch. ``prompt_tokens`` is per sequence (the
    longest prompt when a request carries several). ``max_new_tokens`` is the
    expected output length per sequence (``max_tokens`` when the client sets
    it, otherwise an estimate).
    """

    model: str
    prompt_tokens: int
    max_new_tokens: int
    sequences: int = 1
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    features: frozenset[str] = frozenset()  # request parameters in effect that some engines cannot honour
    #: Longest sequence length the request can reach (prompt + output); read
    #: several times per pool in a decision, so worked out once.
    total_tokens: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_tokens", self.prompt_tokens + self.max_new_tokens)
