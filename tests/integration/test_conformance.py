"""Schemathesis against the gateway with OpenAI's own OpenAPI document.

Generated requests for the four operations hetserve serves must never get a
5xx, and every 200 must match OpenAI's response schema. OpenAI's document
lists only success and 429 answers, so hetserve's documented 4xx answers are
allowed; their body shape is checked by ``test_bad_input``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EMULATED_MODEL

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "openai-openapi.yaml"
OPERATIONS = ["createChatCompletion", "createCompletion", "listModels", "retrieveModel"]

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not SPEC.exists(), reason="OpenAI's OpenAPI document is not beside the checkout"),
]



@pytest.fixture(scope="module")
def openai_schema(gateway_url):
    return schemathesis.openapi.from_path(SPEC)


def _served(case) -> None:
    """Point most generated bodies at a served model with small outputs, so 200s get checked too."""
    body = case.body
    if isinstance(body, dict) and "model" in body and hash(str(body)) % 4:
        body["model"] = EMULATED_MODEL
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = max(1, min(body[key], 8))
        if isinstance(body.get("n"), int):
            body["n"] = max(1, min(body["n"], 2))


#: What every streamed chunk carries (OpenAI's CreateChatCompletionStreamResponse and
#: CreateCompletionResponse). Schemathesis validates an SSE response's raw events
#: against the chunk schema, not their JSON data, so streams are checked here.
CHUNK_KEYS = {"id", "object", "created", "model", "choices"}


def _check_stream(text: str, cut_short: bool) -> None:
    """Every whole event is a chunk or an error event; an uncut stream ends with ``[DONE]``
    (schemathesis stops reading a long stream: ``cut_short``)."""
    *whole, _rest = text.split("\n\n")
    events = [e[len("data: "):] for e in whole if e.startswith("data: ")]
    assert events, text[:200]
    if not cut_short:
        assert events[-1] == "[DONE]", text[-200:]
    for event in events:
        if event == "[DONE]":
            continue
        chunk = json.loads(event)
        if "error" in chunk:  # a stream that broke after its first bytes ends with an error event
            assert set(chunk["error"]) == {"message", "type", "param", "code"}
            continue
        assert CHUNK_KEYS <= set(chunk), chunk
        assert isinstance(chunk["choices"], list), chunk


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_openai_schema(openai_schema, gateway_url, operation_id):
    operation = openai_schema.find_operation_by_id(operation_id)
    seen: dict[int, int] = {}

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        _served(case)
        response = case.call(base_url=f"{gateway_url}/v1", timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        # schemathesis' response: every header is a list of values
        content_type = (response.headers.get("content-type") or [""])[0]
        if response.status_code == 200 and "text/event-stream" in content_type:
            _check_stream(response.text, getattr(response, "stream_cut_short", False))
        elif response.status_code == 200:
            assert content_type.startswith("application/json"), content_type
            operation.validate_response(response)
        elif response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    check()
    assert seen, "no request was generated"
