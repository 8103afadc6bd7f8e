"""Schemathesis against the gateway with OpenAI's own OpenAPI document.

Generated requests for the four operations hetserve serves must never get a
5xx, and every 200 must match OpenAI's response schema. OpenAI's document
lists only success and 429 answers, so hetserve's documented 4xx answers are
allowed; their body shape is checked by ``test_bad_input``.
"""

from __future__ import annotations

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
        if response.status_code == 200 and "text/event-stream" not in response.headers.get("content-type", ""):
            operation.validate_response(response)
        elif response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    check()
    assert seen, "no request was generated"
