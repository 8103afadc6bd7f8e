"""API keys and their limits: who may call, which models, how much per minute.

Keys come from the fleet file (``gateway.api_keys``, plain; or
``gateway.keys_file``, a YAML list of entries holding a key's SHA-256) or
from the environment (``HETSERVE_API_KEYS``: ``name=key`` pairs separated by
commas). Plain keys are hashed when they load and only the digest is kept;
nothing here logs a key. Each entry may restrict the models it can use and
set requests and tokens per minute, enforced by token buckets with an
injected clock. Answers follow OpenAI's: 401 ``invalid_api_key``, 403 for a
model the key may not use, 429 ``rate_limit_exceeded`` (type ``requests``
or ``tokens``) with ``Retry-After``, and the ``x-ratelimit-*`` headers on
every admitted response.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleet.config import describe_validation_error
from gateway import errors

KEYS_ENV = "HETSERVE_API_KEYS"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyEntry(BaseModel):
    """One key in a keys file: its name (for metrics), its digest (or the key, hashed at load) and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    key: str | None = Field(None, min_length=1, description="plain key: hashed at load, then dropped")
    models: list[str] = Field(default_factory=list, description="empty: every model")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_secret(self) -> "KeyEntry":
        if (self.sha256 is None) == (self.key is None):
            raise ValueError("give exactly one of 'sha256' and 'key'")
        if self.key is not None:
            self.sha256, self.key = digest(self.key), None
        return self


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[KeyEntry]


class KeysError(ValueError):
    """A keys file or ``HETSERVE_API_KEYS`` is invalid; the message says where."""


def load_keys(plain: list[str], keys_file: str | Path | None, environ: Mapping[str, str] = os.environ) -> list[KeyEntry]:
    """Every key the gateway accepts; empty means no authentication."""
    entries = [KeyEntry(name=f"key-{i}", key=k) for i, k in enumerate(plain)]
    if keys_file is not None:
        try:
            data = yaml.safe_load(Path(keys_file).read_text())
            entries += KeysFile.model_validate(data).keys
        except OSError as exc:
            raise KeysError(f"cannot read keys file {keys_file}: {exc.strerror}") from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise KeysError(f"{keys_file}: {_first_error(exc)}") from None
    for i, pair in enumerate(p for p in environ.get(KEYS_ENV, "").split(",") if p.strip()):
        name, sep, key = pair.strip().partition("=")
        if not sep or not name or not key:
            raise KeysError(f"{KEYS_ENV}: entry {i} is not name=key")
        entries.append(KeyEntry(name=name, key=key))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise KeysError(f"key names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return entries


def fleet_keys(api_keys: list[str], keys_file: str | None, base_dir: str | Path | None) -> list[KeyEntry]:
    """The keys of a fleet's ``gateway`` section (``keys_file`` relative to the fleet file) and the environment."""
    if keys_file and base_dir and not Path(keys_file).is_absolute():
        keys_file = str(Path(base_dir) / keys_file)
    return load_keys(api_keys, keys_file)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return f"not valid YAML: {exc}"


class TokenBucket:
    """``per_minute`` units, refilled continuously; a request takes what it asks for."""

    def __init__(self, per_minute: int, clock: Callable[[], float]):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._level = self.capacity
        self._at = clock()
        self._clock = clock

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 when it fits now); more than the capacity waits for a full bucket."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self._level >= need else (need - self._level) / self.rate

    def take(self, amount: float) -> None:
        self._level -= min(amount, self.capacity)

    def remaining(self) -> int:
        return max(0, math.floor(self._level))

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self._level) / self.rate


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class Caller:
    """An authenticated key and its buckets."""

    entry: KeyEntry
    requests: TokenBucket | None
    tokens: TokenBucket | None

    @property
    def name(self) -> str:
        return self.entry.name

    def admit(self, model: str, tokens: int) -> dict[str, str]:
        """Check the model and both limits; take from the buckets; the ``x-ratelimit-*`` headers."""
        if self.entry.models and model not in self.entry.models:
            raise errors.PermissionDenied(
                f"the API key '{self.name}' may not use model '{model}'", param="model", code="model_not_allowed"
            )
        for kind, bucket, amount in (("requests", self.requests, 1), ("tokens", self.tokens, tokens)):
            if bucket is None:
                continue
            wait = bucket.wait_s(amount)
            if wait > 0:
                raise errors.RateLimited(
                    f"Rate limit reached for key '{self.name}' on {kind} per minute: limit "
                    f"{int(bucket.capacity)}, requested {amount}; try again in {duration(wait)}",
                    type_=kind, headers={"Retry-After": str(math.ceil(wait)), **self.headers()},
                )
        for bucket, amount in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is not None:
                bucket.take(amount)
        return self.headers()

    def headers(self) -> dict[str, str]:
        out = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(int(bucket.capacity))
                out[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining())
                out[f"x-ratelimit-reset-{kind}"] = duration(bucket.reset_s())
        return out


class KeyStore:
    """Looks a bearer token up by its digest; ``None`` entries mean authentication is off."""

    def __init__(self, entries: list[KeyEntry], clock: Callable[[], float] = time.monotonic):
        self._callers = {
            e.sha256: Caller(
                e,
                TokenBucket(e.requests_per_minute, clock) if e.requests_per_minute else None,
                TokenBucket(e.tokens_per_minute, clock) if e.tokens_per_minute else None,
            )
            for e in entries
        }

    @property
    def enabled(self) -> bool:
        return bool(self._callers)

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller for an ``Authorization`` header; raises 401 when keys are on and it matches none."""
        if not self._callers:
            return None
        token = (authorization or "").removeprefix("Bearer ").strip()
        caller = self._callers.get(digest(token)) if token else None
        if caller is None:
            raise errors.AuthenticationError("Incorrect or missing API key (Authorization: Bearer ...)")
        return caller
