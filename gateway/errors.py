"""Typed API errors, and the one place every error becomes an HTTP answer.

Every failure a client can see leaves here in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with its status.
Errors from pools (``workers.errors``) and from routing (``routing.errors``)
are mapped by class; Ray wraps exceptions raised in a replica, so the cause
is unwrapped first.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from routing import errors as routing_errors
from workers import errors as worker_errors

log = logging.getLogger("hetserve.gateway")


class APIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.code
        self.headers = headers or {}


class InvalidRequest(APIError):
    status, type = 400, "invalid_request_error"


class AuthenticationError(APIError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(APIError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(APIError):
    status, type = 404, "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class Overloaded(APIError):
    status, type, code = 429, "rate_limit_error", "pool_capacity_exceeded"


class RateLimited(APIError):
    """A key's requests or tokens per minute ran out; ``type_`` says which, as OpenAI's do."""

    status, type, code = 429, "requests", "rate_limit_exceeded"

    def __init__(self, message: str, type_: str = "requests", **kwargs):
        super().__init__(message, **kwargs)
        self.type = type_


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", "pool_unavailable"


class PoolsStarting(Unavailable):
    code = "pools_starting"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class ClientClosed(APIError):
    """The client went away and Serve cancelled the request: nobody reads this answer, and no pool failed."""

    status, type, code = 499, "client_closed_request", "client_closed_request"


class PoolTimeout(APIError):
    """A pool sent no first token, or no next token, within the gateway's timeouts (a hung pool)."""

    status, type, code = 504, "timeout", "pool_timeout"


@dataclass(frozen=True)
class ErrorBody:
    status: int
    payload: dict
    headers: dict

    def response(self) -> JSONResponse:
        return JSONResponse(self.payload, status_code=self.status, headers=self.headers)

    def sse(self) -> str:
        """The error as an SSE event, for failures after a stream has started."""
        return f"data: {json.dumps(self.payload)}\n\n"


#: Ray's exceptions that mean a pool's replica is gone or unreachable (not that the request was bad).
_RAY_POOL_FAILURES = frozenset({
    "ActorDiedError", "RayActorError", "ActorUnavailableError", "DeploymentUnavailableError",
    "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "GetTimeoutError",
})


def _payload(message: str, type_: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _unwrap(exc: BaseException) -> BaseException:
    """Ray raises ``RayTaskError`` around a replica's exception; get the original."""
    cause = getattr(exc, "cause", None)
    if cause is not None and type(exc).__name__.startswith("RayTaskError"):
        return _unwrap(cause)
    return exc


_SCALAR_TAGS = frozenset({"str", "int", "float", "bool", "none"})
_TYPE_TAG_PREFIXES = ("list[", "dict[", "function-", "literal[", "tagged-union[", "nullable[")


def _is_type_tag(part: str) -> bool:
    """Whether a pydantic error location part names a union member's type rather than a field or index."""
    return part in _SCALAR_TAGS or part.startswith(_TYPE_TAG_PREFIXES) or part[:1].isupper()


def _from_pydantic(exc: ValidationError | RequestValidationError) -> APIError:
    # The first failing field; of its errors (one per union member) the deepest says most ("stop.1", not
    # "stop" when a list of strings holds a number).
    found = [[str(p) for p in e.get("loc", ()) if p != "body"] for e in exc.errors()]  # FastAPI's start "body"
    field = found[0][:1]
    i = max((i for i, loc in enumerate(found) if loc[:1] == field), key=lambda i: len(found[i]))
    err, loc = exc.errors()[i], found[i]
    # Union members add their type to the location ("prompt.str", "tool_choice.NamedToolChoice"): keep the
    # field path only (a field named like a type's prefix, "stream", "stop", stays).
    param = ".".join(p for p in loc if not _is_type_tag(p))
    message = err.get("msg", "invalid request").removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return InvalidRequest(message, param=param or None)


def to_api_error(exc: BaseException) -> APIError:
    """Map any exception to the APIError a client sees."""
    exc = _unwrap(exc)
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, (ValidationError, RequestValidationError)):
        return _from_pydantic(exc)
    if isinstance(exc, worker_errors.ContextLengthExceeded):
        return InvalidRequest(exc.message, param=exc.param, code="context_length_exceeded")
    if isinstance(exc, worker_errors.InvalidRequest):
        return InvalidRequest(exc.message, param=exc.param)
    if isinstance(exc, routing_errors.ModelNotServed):
        return ModelNotFound(str(exc), param="model")
    if isinstance(exc, routing_errors.NoFeasiblePool):
        return InvalidRequest(str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, routing_errors.UnsupportedFeature):
        return InvalidRequest(str(exc), param=exc.missing[0], code="unsupported_parameter")
    if isinstance(exc, routing_errors.NoHealthyPool):
        return Unavailable(str(exc))
    if isinstance(exc, routing_errors.AllPoolsSaturated):
        seconds = min(60, max(1, math.ceil(exc.retry_after_s)))  # Retry-After takes whole seconds
        return Overloaded(f"every pool serving '{exc.model}' is saturated; retry after {seconds} s",
                          headers={"Retry-After": str(seconds)})
    if isinstance(exc, (worker_errors.EngineFailure, worker_errors.EngineStartError)):
        return Unavailable(f"the pool failed: {exc}")
    if type(exc).__module__.startswith("ray.") and type(exc).__name__ == "TaskCancelledError":
        return ClientClosed("the client closed the request")
    if type(exc).__module__.startswith("ray.") and type(exc).__name__ in _RAY_POOL_FAILURES:
        return Unavailable(f"the pool is unavailable: {type(exc).__name__}: {str(exc)[:300]}")
    log.exception("unexpected error", exc_info=exc)
    return APIError(f"internal error: {type(exc).__name__}")


def error_body(exc: BaseException) -> ErrorBody:
    err = to_api_error(exc)
    return ErrorBody(err.status, _payload(err.message, err.type, err.param, err.code), err.headers)


def install_handlers(app: FastAPI, on_error_seen=lambda body: None) -> None:
    """Route every exception FastAPI sees through :func:`error_body`.

    ``on_error_seen`` gets each :class:`ErrorBody` (for metrics).
    """

    def answer(request: Request, body: ErrorBody) -> JSONResponse:
        on_error_seen(body)
        return body.response()

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return answer(request, error_body(exc))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = "not_found" if exc.status_code == 404 else None
        body = ErrorBody(exc.status_code, _payload(str(exc.detail), type_, None, code), dict(exc.headers or {}))
        return answer(request, body)

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(APIError, on_error)
    app.add_exception_handler(RequestValidationError, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
