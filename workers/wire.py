"""The bytes of the data path between the gateway and a pool replica (``workers.http_endpoint``).

One sequence per HTTP request. The request body is a ``PoolRequest`` as
JSON. A streamed answer is newline-delimited JSON, one line per relay item:
``[text, prompt_tokens, output_tokens, finish_reason]``, the last one with a
fifth element, the request's ``Telemetry``; when the request asked for
log-probabilities, every line has a sixth, ``[[token, logprob, [[token,
logprob], ...]], ...]``, and a tool request's one line a seventh, ``[[id,
name, arguments], ...]`` (elements before the last one present may be
``null``); a failure after the first line
is a line ``{"error": ...}``. A whole (non-streaming) answer is one such
item as the body, or, when the request's ``progress_s`` passed before it,
lines as a stream's: empty progress items (``["", prompt, output, null]``)
then the answer. A failure before the first item is an HTTP error status
with ``{"error": {"kind", "message", "param"}}``, ``kind`` naming a class of
``workers.errors``, so the gateway raises the same typed error it would
have raised in-process.

Arrays, not objects, for the per-token lines: the gateway decodes one per
relayed delta, and a four-element array is the cheapest thing to decode.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from workers import errors as worker_errors
from workers.engine import SamplingParams, TokenLogprob, TopLogprob
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry
from workers.tool_calls import ToolCall

#: Header that carries the shared secret of one deployment (gateway and its pools).
TOKEN_HEADER = "x-hetserve-internal-token"
STATUS = {
    "ContextLengthExceeded": 400,
    "InvalidRequest": 400,
}
_KINDS = {
    name: cls
    for name, cls in vars(worker_errors).items()
    if isinstance(cls, type) and issubclass(cls, worker_errors.WorkerError)
}


_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(PoolRequest))
_PARAMS_FIELDS = tuple(f.name for f in dataclasses.fields(SamplingParams))


def encode_request(request: PoolRequest) -> bytes:
    """Field by field, not ``dataclasses.asdict``: that rebuilds every message's dicts and lists before
    ``json`` walks them again (a percent of the gateway's CPU on a 1-token request)."""
    data = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    data["params"] = {name: getattr(request.params, name) for name in _PARAMS_FIELDS}
    return json.dumps(data, separators=(",", ":")).encode()


def decode_request(body: bytes) -> PoolRequest:
    data = json.loads(body)
    params = data["params"]
    if params.get("logit_bias"):  # JSON object keys are strings; token ids are ints
        params["logit_bias"] = {int(k): v for k, v in params["logit_bias"].items()}
    data["params"] = SamplingParams(**params)
    return PoolRequest(**data)


def encode_item(item: RelayItem) -> bytes:
    row: list[Any] = [item.text, item.prompt_tokens, item.output_tokens, item.finish_reason]
    if item.telemetry is not None or item.logprobs is not None or item.tool_calls is not None:
        row.append(None if item.telemetry is None else dataclasses.asdict(item.telemetry))
    if item.logprobs is not None or item.tool_calls is not None:
        row.append(None if item.logprobs is None else
                   [[lp.token, lp.logprob, [[t.token, t.logprob] for t in lp.top]] for lp in item.logprobs])
    if item.tool_calls is not None:
        row.append([[c.id, c.name, c.arguments] for c in item.tool_calls])
    return json.dumps(row, separators=(",", ":")).encode()


def decode_item(line: bytes | str) -> RelayItem:
    """One relay item; raises the typed error a ``{"error": ...}`` line carries, and ``EngineFailure`` for
    bytes that are no relay item (the pool's failure, not the client's)."""
    try:
        row = json.loads(line)
        if isinstance(row, dict):
            error = decode_error(row)
        else:
            return _item(row)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise worker_errors.EngineFailure(f"the pool sent what is no relay item: {type(exc).__name__}: {exc}") from None
    raise error


def _item(row: list) -> RelayItem:
    if len(row) == 4:
        return RelayItem(*row)
    t = row[4]
    telemetry = None if t is None else Telemetry(t["energy_j"], t["engine_s"], ReplicaStats(**t["stats"]),
                                                 t.get("first_token_s"))
    logprobs = tool_calls = None
    if len(row) > 5 and row[5] is not None:
        logprobs = [TokenLogprob(tok, lp, tuple(TopLogprob(*alt) for alt in top)) for tok, lp, top in row[5]]
    if len(row) > 6:
        tool_calls = [ToolCall(*call) for call in row[6]]
    return RelayItem(row[0], row[1], row[2], row[3], telemetry, logprobs, tool_calls)


def encode_error(exc: BaseException) -> tuple[int, bytes]:
    """HTTP status and body for ``exc``; anything but a ``WorkerError`` is an engine failure (5xx)."""
    if isinstance(exc, worker_errors.WorkerError):
        kind, message, param = type(exc).__name__, exc.message, exc.param
    else:
        kind, message, param = "EngineFailure", f"{type(exc).__name__}: {exc}", None
    body = {"error": {"kind": kind, "message": message, "param": param}}
    return STATUS.get(kind, 503), json.dumps(body).encode()


def decode_error(body: Any) -> worker_errors.WorkerError:
    """The typed error an ``{"error": {"kind", "message", "param"}}`` body carries; ``EngineFailure`` for any
    other body (the pool failed in a way it did not describe)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return worker_errors.EngineFailure(f"the pool failed: {str(body)[:200]}")
    cls = _KINDS.get(err.get("kind"), worker_errors.EngineFailure)
    return cls(str(err.get("message", "the pool failed")), err.get("param"))
