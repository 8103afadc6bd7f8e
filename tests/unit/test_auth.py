"""API keys and limits: loading, buckets on a fake clock, OpenAI's answers and
headers, and the official openai client's retries against them."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from tests.unit.test_service import MODEL, FakePools, make_service

from gateway import errors
from gateway.auth import KEYS_ENV, KeyEntry, KeysError, KeyStore, TokenBucket, digest, duration, load_keys
from gateway.responses import CHAT


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_keys_are_kept_only_as_digests():
    entry = KeyEntry(name="a", key="sk-secret")
    assert entry.key is None and entry.sha256 == digest("sk-secret")
    assert "sk-secret" not in entry.model_dump_json()


def test_keys_from_file_and_environment(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - name: team\n    sha256: {digest('k1')}\n    models: [m]\n    requests_per_minute: 5\n")
    entries = load_keys(["k0"], path, {KEYS_ENV: "ops=k2, ci=k3"})
    assert [e.name for e in entries] == ["key-0", "team", "ops", "ci"]
    assert entries[1].models == ["m"] and entries[1].requests_per_minute == 5


@pytest.mark.parametrize("text, where", [
    ("keys:\n  - name: a\n", "keys.0: give exactly one of 'sha256' and 'key'"),
    ("keys:\n  - name: a\n    key: k\n    rpm: 5\n", "keys.0.rpm: unknown key"),
    ("keys:\n  - name: a\n    sha256: nothex\n", "keys.0.sha256"),
])
def test_a_bad_keys_file_names_the_key(tmp_path, text, where):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeysError, match=where.replace(".", r"\.").replace("(", r"\(")):
        load_keys([], path, {})


def test_bad_environment_entry_and_repeated_names_are_errors():
    with pytest.raises(KeysError, match="entry 0 is not name=key"):
        load_keys([], None, {KEYS_ENV: "justakey"})
    with pytest.raises(KeysError, match="repeat"):
        load_keys([], None, {KEYS_ENV: "a=1,a=2"})


def test_bucket_refills_at_its_rate_and_says_how_long_to_wait():
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one a second
    bucket.take(60)
    assert bucket.wait_s(1) == pytest.approx(1.0)
    clock.t += 0.5
    assert bucket.wait_s(1) == pytest.approx(0.5) and bucket.remaining() == 0
    clock.t += 30
    assert bucket.wait_s(1) == 0 and bucket.remaining() == 30
    assert bucket.wait_s(10_000) == pytest.approx(29.5)  # more than the capacity waits for a full bucket


def test_reset_durations_read_like_openais():
    assert [duration(s) for s in (0.02, 1.0, 1.2, 360.0)] == ["20ms", "1s", "2s", "6m0s"]


def test_store_answers_401_403_and_429_in_openais_shape():
    clock = Clock()
    store = KeyStore([KeyEntry(name="a", key="k", models=["m"], requests_per_minute=2, tokens_per_minute=1000)], clock)
    for header in (None, "Bearer wrong", "k"):
        with pytest.raises(errors.AuthenticationError):
            store.authenticate(header) if header != "k" else store.authenticate("Basic k")
    caller = store.authenticate("Bearer k")
    with pytest.raises(errors.PermissionDenied, match="may not use model 'other'"):
        caller.admit("other", 10)
    headers = caller.admit("m", 400)
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-remaining-tokens"] == "600"
    with pytest.raises(errors.RateLimited) as tokens:
        caller.admit("m", 700)
    assert tokens.value.type == "tokens" and tokens.value.code == "rate_limit_exceeded"
    caller.admit("m", 100)  # a refused request took nothing: the second request still fits
    with pytest.raises(errors.RateLimited) as requests:
        caller.admit("m", 1)
    assert requests.value.type == "requests" and requests.value.headers["Retry-After"] == "30"


def test_no_keys_means_no_authentication():
    assert KeyStore([]).authenticate(None) is None


def _app(store: KeyStore) -> tuple[FastAPI, dict]:
    service, _, finished = make_service(FakePools())
    seen = {"attempts": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        seen["attempts"] += 1
        caller = store.authenticate(request.headers.get("authorization"))
        return await service.handle(CHAT, await request.body(), request.headers, "rid", caller)

    errors.install_handlers(app)
    return app, seen


def _client(app: FastAPI, key: str, retries: int) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, max_retries=retries,
                              http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app)))


MESSAGES = [{"role": "user", "content": "hi"}]


async def test_openai_client_sees_limits_headers_and_gives_up_after_its_retries():
    clock = Clock()  # frozen: the bucket never refills
    app, seen = _app(KeyStore([KeyEntry(name="a", key="k", requests_per_minute=60)], clock))
    client = _client(app, "k", retries=1)
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert raw.headers["x-ratelimit-remaining-requests"] == "59"
    for _ in range(59):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    seen["attempts"] = 0
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert seen["attempts"] == 2  # one try and one retry, after the Retry-After it was told
    body = err.value.body
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
    assert err.value.response.headers["Retry-After"] == "1"


async def test_openai_client_does_not_retry_a_bad_key_or_a_forbidden_model():
    app, seen = _app(KeyStore([KeyEntry(name="a", key="k", models=["other"])]))
    with pytest.raises(openai.AuthenticationError):
        await _client(app, "wrong", retries=2).chat.completions.create(model=MODEL, messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError) as err:
        await _client(app, "k", retries=2).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert seen["attempts"] == 2 and err.value.body["param"] == "model"
    assert json.loads(err.value.response.text)["error"]["code"] == "model_not_allowed"


def test_serve_refuses_a_bad_keys_file_before_starting_anything(tmp_path, capsys):
    from hetserve.cli import main

    (tmp_path / "keys.yaml").write_text("keys:\n  - name: a\n    rpm: 5\n")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("gateway:\n  keys_file: keys.yaml\npools:\n  - {name: a, hardware: h100, engine: emulated, "
                     "model: llama-3.1-8b, models: [m]}\n")
    assert main(["serve", "--fleet", str(fleet)]) == 2
    err = capsys.readouterr().err
    assert "invalid API keys" in err and "keys.0.rpm: unknown key" in err
