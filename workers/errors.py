"""Typed errors raised by pools and engine adapters.

They carry no HTTP knowledge: ``gateway.errors`` maps each class to a status
and OpenAI's error shape in one place. They must stay picklable (Ray sends
them from a replica to the gateway), hence plain ``args``.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class. ``param`` names the offending request field, if any."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message, param)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return self.message


class InvalidRequest(WorkerError):
    """The request cannot run on this engine as given (bad parameter)."""


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus requested output is longer than the model's context."""


class EngineStartError(WorkerError):
    """The engine (or its device, or its power meter) could not start."""


class EngineFailure(WorkerError):
    """The engine failed while serving a request."""
