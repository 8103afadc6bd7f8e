"""Typed errors raised by routing.

They carry no HTTP knowledge: the gateway maps each class to a status and
OpenAI's error shape in one place. Request-time errors derive from
``RoutingError`` and stay picklable (``args`` are the constructor's
arguments); load-time errors (bad profile or config) derive from
``ValueError``.
"""

from __future__ import annotations


class RoutingError(Exception):
    """Base class of errors raised while choosing a pool for a request."""


class ModelNotServed(RoutingError):
    """No pool serves the requested model."""

    def __init__(self, model: str, available: tuple[str, ...] = ()):
        super().__init__(model, available)
        self.model = model
        self.available = available

    def __str__(self) -> str:
        served = ", ".join(self.available) or "none"
        return f"model '{self.model}' is not served here; available: {served}"


class NoHealthyPool(RoutingError):
    """Pools serve the model but none is healthy."""

    def __init__(self, model: str):
        super().__init__(model)
        self.model = model

    def __str__(self) -> str:
        return f"no healthy pool serves model '{self.model}'"


class NoFeasiblePool(RoutingError):
    """No healthy pool can run a sequence this long (prompt plus output)."""

    def __init__(self, model: str, seq_len: int):
        super().__init__(model, seq_len)
        self.model = model
        self.seq_len = seq_len

    def __str__(self) -> str:
        return (
            f"no pool serving '{self.model}' can run a sequence of "
            f"{self.seq_len} tokens (prompt plus max new tokens)"
        )


class UnsupportedFeature(RoutingError):
    """No pool serving the model honours every feature (request parameter) the request uses."""

    def __init__(self, model: str, missing: tuple[str, ...]):
        super().__init__(model, missing)
        self.model = model
        self.missing = missing

    def __str__(self) -> str:
        return f"no pool serving '{self.model}' supports {', '.join(self.missing)} (omit it, or send its neutral value)"


class AllPoolsSaturated(RoutingError):
    """Every feasible pool is at capacity; the client should retry later."""

    def __init__(self, retry_after_s: float, model: str = ""):
        super().__init__(retry_after_s, model)
        self.retry_after_s = retry_after_s
        self.model = model

    def __str__(self) -> str:
        return (
            f"every pool serving '{self.model}' is saturated; "
            f"retry after {self.retry_after_s:g} s"
        )


class ProfileError(ValueError):
    """An efficiency profile file or dict is invalid; says where and why."""


class RoutingConfigError(ValueError):
    """The routing YAML is invalid; names the bad key and the valid choices."""
