"""Turn a validated API request into the :class:`routing.RequestShape` the router sees."""

from __future__ import annotations

from routing import RequestShape

from gateway.tokens import TokenCounter

#: Expected output length for a model before any request without max_tokens finished.
INITIAL_OUTPUT_ESTIMATE = 256
_ALPHA = 0.1


class OutputLengthEstimator:
    """Exponentially weighted mean of completion tokens per model, for requests without max_tokens."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}

    def estimate(self, model: str) -> int:
        return round(self._mean.get(model, INITIAL_OUTPUT_ESTIMATE))

    def observe(self, model: str, completion_tokens: int) -> None:
        prev = self._mean.get(model)
        self._mean[model] = completion_tokens if prev is None else prev + _ALPHA * (completion_tokens - prev)


def build_shape(
    model: str,
    prompts: list[dict],
    n: int,
    max_tokens: int | None,
    counter: TokenCounter,
    outputs: OutputLengthEstimator,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    features: frozenset[str] = frozenset(),
    context: int | None = None,
) -> RequestShape:
    """``context``: the longest sequence a pool serving ``model`` runs. A request without ``max_tokens``
    gets the estimated output, at most what that context leaves after the prompt (the engine runs at most
    that much: ``SamplingParams.fit_context``), so the estimate alone never makes it infeasible."""
    prompt_tokens = max(counter.count_prompt(p) for p in prompts)
    if max_tokens is None:
        new_tokens = outputs.estimate(model)
        if context is not None:
            new_tokens = max(1, min(new_tokens, context - prompt_tokens))
    else:
        new_tokens = max_tokens
    return RequestShape(
        model=model,
        prompt_tokens=prompt_tokens,
        max_new_tokens=new_tokens,
        sequences=len(prompts) * n,
        slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms,
        features=features,
    )
