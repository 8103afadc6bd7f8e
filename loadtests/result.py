"""What the load generator records about one request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestResult:
    """Timings in seconds; ``*_s`` times are relative to the run's start.

    ``chunk_s`` holds the arrival time (from send) of every content-bearing
    chunk, so TTFT is its first entry; a chunk may carry several tokens, so inter-chunk gaps (``itl_s``)
    are what the client saw, and TPOT is derived from the token count.
    """

    index: int
    model: str
    scheduled_s: float | None  # when the schedule wanted it sent (None in closed loop)
    sent_s: float = 0.0
    prompt_tokens: int = 0  # from usage; the requested length when usage is missing
    output_tokens: int = 0  # from usage; the number of content chunks when usage is missing
    e2e_s: float | None = None
    chunk_s: list[float] = field(default_factory=list)
    status: int | None = None
    error_type: str | None = None
    error: str | None = None
    error_code: str | None = None  # the error body's ``code`` (e.g. context_length_exceeded)
    pool: str | None = None  # x-hetserve-pool: which hardware pool served it
    request_id: str | None = None  # x-request-id
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    @property
    def ttft_s(self) -> float | None:
        """First content chunk; without streaming, the whole response."""
        if self.chunk_s:
            return self.chunk_s[0]
        return self.e2e_s if self.ok else None

    @property
    def itl_s(self) -> list[float]:
        """Gaps between consecutive content-bearing chunks."""
        return [b - a for a, b in zip(self.chunk_s, self.chunk_s[1:])]

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: ``(e2e - ttft) / (output_tokens - 1)``."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def dispatch_lag_s(self) -> float | None:
        """How late the client sent it against its schedule (its own overhead)."""
        return None if self.scheduled_s is None else self.sent_s - self.scheduled_s
