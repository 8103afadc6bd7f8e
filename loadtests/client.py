"""Send one OpenAI-style request and time it.

Streaming requests ask for ``stream_options.include_usage`` so token counts
come from the server, and ``ignore_eos`` (a vLLM and hetserve extension) so
the output runs to ``max_tokens``. Every failure becomes an ``error_type``
on the result rather than an exception: ``http_<status>``, ``timeout``,
``connect_error``, ``protocol_error``, ``network_error``, ``http_error``
(another httpx failure), ``stream_error``
(an error object inside the stream), ``bad_chunk`` (unparsable JSON),
``incomplete_stream`` (no ``[DONE]``) or ``no_output``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Literal

import httpx

from loadtests.result import RequestResult
from loadtests.sse import iter_sse_data

Endpoint = Literal["chat", "completions"]
_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
_ERROR_BODY_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how requests are sent."""

    base_url: str = "http://127.0.0.1:8000"
    endpoint: Endpoint = "chat"
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = True
    ignore_eos: bool = True
    timeout_s: float = 300.0
    extra_body: dict = field(default_factory=dict)  # more request fields, e.g. temperature

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + _PATHS[self.endpoint]

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def payload(self, model: str, prompt: str | list[int], max_tokens: int) -> dict:
        """A prompt of token ids goes to the completions endpoint as is."""
        body: dict = {"model": model, "max_tokens": max_tokens, "stream": self.stream, **self.extra_body}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


async def send_request(
    client: httpx.AsyncClient,
    target: Target,
    result: RequestResult,
    prompt: str | list[int],
    max_tokens: int,
    run_start: float,
    headers: dict[str, str] | None = None,
) -> RequestResult:
    """Send, fill ``result`` in place and return it. ``run_start`` is a ``perf_counter`` time;
    ``headers`` are added to the target's for this request only (e.g. its SLO targets)."""
    sent = time.perf_counter()
    result.sent_s = sent - run_start
    body = target.payload(result.model, prompt, max_tokens)
    try:
        async with asyncio.timeout(target.timeout_s):
            async with client.stream(
                "POST", target.url, json=body, headers={**target.request_headers(), **(headers or {})}
            ) as response:
                result.status = response.status_code
                result.pool = response.headers.get("x-hetserve-pool")
                result.request_id = response.headers.get("x-request-id")
                if response.status_code >= 400:
                    await _record_http_error(response, result)
                elif target.stream:
                    await _read_stream(response, result, sent)
                else:
                    _read_body(json.loads(await response.aread()), result)
    except TimeoutError:
        _fail(result, "timeout", f"no complete response within {target.timeout_s} s")
    except httpx.TimeoutException as e:
        _fail(result, "timeout", str(e) or type(e).__name__)
    except httpx.ConnectError as e:
        _fail(result, "connect_error", str(e))
    except httpx.RemoteProtocolError as e:
        _fail(result, "protocol_error", str(e))
    except httpx.TransportError as e:
        _fail(result, "network_error", str(e) or type(e).__name__)
    except httpx.HTTPError as e:  # e.g. a body that fails to decode
        _fail(result, "http_error", str(e) or type(e).__name__)
    except json.JSONDecodeError as e:
        _fail(result, "bad_chunk", str(e))
    result.e2e_s = time.perf_counter() - sent
    return result


async def _read_stream(response: httpx.Response, result: RequestResult, sent: float) -> None:
    done = False
    # Read to the end even after [DONE]: a fully read response keeps its connection alive.
    async for data in iter_sse_data(response.aiter_bytes()):
        now = time.perf_counter()
        if done:
            continue
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            _fail(result, "bad_chunk", f"expected a JSON object, got {data[:50]!r}")
            return
        if "error" in chunk:
            _fail(result, "stream_error", _error_message(chunk))
            return
        if _has_content(chunk):
            result.chunk_s.append(now - sent)
        if chunk.get("usage"):
            _record_usage(chunk["usage"], result)
    if not done:
        _fail(result, "incomplete_stream", "the stream ended without [DONE]")
    elif not result.chunk_s:
        _fail(result, "no_output", "no content in the stream")
    elif not result.output_tokens:
        result.output_tokens = len(result.chunk_s)


def _has_content(chunk: dict) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta is not None:
            if delta.get("content") or delta.get("reasoning_content"):
                return True
        elif choice.get("text"):
            return True
    return False


def _read_body(body: dict, result: RequestResult) -> None:
    if body.get("usage"):
        _record_usage(body["usage"], result)
    if not result.output_tokens:
        _fail(result, "no_output", "no usage in the response")


def _record_usage(usage: dict, result: RequestResult) -> None:
    result.prompt_tokens = usage.get("prompt_tokens") or result.prompt_tokens
    result.output_tokens = usage.get("completion_tokens") or 0


async def _record_http_error(response: httpx.Response, result: RequestResult) -> None:
    raw = b""
    async for part in response.aiter_bytes():
        raw += part
        if len(raw) >= _ERROR_BODY_LIMIT:
            break
    try:
        body = json.loads(raw)
        message = _error_message(body)
        error = body.get("error")
        result.error_code = error.get("code") if isinstance(error, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        message = raw[:200].decode("utf-8", errors="replace")
    _fail(result, f"http_{response.status_code}", message)


def _error_message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error if error is not None else body)[:200]


def _fail(result: RequestResult, error_type: str, message: str) -> None:
    result.error_type = error_type
    result.error = message[:200]
