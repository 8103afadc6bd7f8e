"""Bad input gets OpenAI's error shape with the right status, and the gateway keeps serving."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import EMULATED_MODEL, REAL_MODEL

pytestmark = pytest.mark.engine

MSG = [{"role": "user", "content": "hi"}]

CASES = [
    ("malformed json", "/v1/chat/completions", b"{not json", 400, None),
    ("not an object", "/v1/chat/completions", [1, 2], 400, None),
    ("missing messages", "/v1/chat/completions", {"model": REAL_MODEL}, 400, "messages"),
    ("missing prompt", "/v1/completions", {"model": REAL_MODEL}, 400, "prompt"),
    ("wrong type", "/v1/chat/completions", {"model": REAL_MODEL, "messages": "hi"}, 400, "messages"),
    ("temperature range", "/v1/chat/completions", {"model": REAL_MODEL, "messages": MSG, "temperature": 3}, 400, "temperature"),
    ("negative max_tokens", "/v1/completions", {"model": REAL_MODEL, "prompt": "x", "max_tokens": -5}, 400, "max_tokens"),
    ("stream_options without stream", "/v1/chat/completions",
     {"model": REAL_MODEL, "messages": MSG, "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("unknown model", "/v1/chat/completions", {"model": "gpt-9", "messages": MSG}, 404, "model"),
    ("too long for the model", "/v1/completions", {"model": REAL_MODEL, "prompt": "word " * 3000, "max_tokens": 10}, 400, None),
    ("too long for every pool", "/v1/completions", {"model": EMULATED_MODEL, "prompt": "x", "max_tokens": 10_000_000}, 400, None),
    ("bad token id", "/v1/completions", {"model": REAL_MODEL, "prompt": [1, 10_000_000], "max_tokens": 2}, 400, "prompt"),
    ("empty token list", "/v1/completions", {"model": REAL_MODEL, "prompt": [], "max_tokens": 2}, 400, "prompt"),
    ("n too large", "/v1/completions", {"model": REAL_MODEL, "prompt": "x", "n": 1000}, 400, "n"),
    ("image content", "/v1/chat/completions",
     {"model": REAL_MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages"),
]


@pytest.mark.parametrize("path,body,status,param", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_openai_error(gateway_url, path, body, status, param):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(f"{gateway_url}{path}", headers={"content-type": "application/json"}, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param


def test_context_length_error_has_its_code(gateway_url):
    r = httpx.post(
        f"{gateway_url}/v1/completions",
        json={"model": REAL_MODEL, "prompt": "word " * 3000, "max_tokens": 10},
        timeout=30,
    )
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_unknown_model_through_openai_client(client):
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-9")
    assert info.value.body["code"] == "model_not_found"


def test_still_serving_after_bad_input(client):
    r = client.completions.create(model=REAL_MODEL, prompt="still alive", max_tokens=2)
    assert r.usage.completion_tokens >= 1
