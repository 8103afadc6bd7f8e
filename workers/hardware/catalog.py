"""Named hardware and model entries, loaded once from ``catalog.yaml``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from workers.hardware.model import HardwareModel, ModelSpec

_CATALOG_FILE = Path(__file__).with_name("catalog.yaml")

_Entry = TypeVar("_Entry", bound=BaseModel)


class CatalogError(LookupError):
    """An unknown catalog key, or an invalid catalog entry."""


def _parse(section: str, cls: type[_Entry], raw: dict) -> dict[str, _Entry]:
    entries = {}
    for key, fields in (raw.get(section) or {}).items():
        try:
            entries[key] = cls.model_validate(fields)
        except ValidationError as exc:
            raise CatalogError(f"{section}.{key} is invalid: {exc}") from exc
    return entries


@functools.cache
def _catalog() -> tuple[dict[str, HardwareModel], dict[str, ModelSpec]]:
    raw = yaml.safe_load(_CATALOG_FILE.read_text(encoding="utf-8"))
    return _parse("hardware", HardwareModel, raw), _parse("models", ModelSpec, raw)


def _lookup(kind: str, entries: dict[str, _Entry], key: str) -> _Entry:
    try:
        return entries[key]
    except KeyError:
        raise CatalogError(
            f"unknown {kind} {key!r}; known: {', '.join(sorted(entries))}"
        ) from None


def hardware_keys() -> list[str]:
    return sorted(_catalog()[0])


def model_keys() -> list[str]:
    return sorted(_catalog()[1])


def get_hardware(key: str) -> HardwareModel:
    """The catalog's hardware entry ``key`` (e.g. ``"h100"``)."""
    return _lookup("hardware", _catalog()[0], key)


def get_model(key: str) -> ModelSpec:
    """The catalog's model entry ``key`` (e.g. ``"llama-3.1-8b"``)."""
    return _lookup("model", _catalog()[1], key)


def resolve_hardware(hardware: str | HardwareModel) -> HardwareModel:
    """Accept a catalog key or a ready ``HardwareModel``."""
    return hardware if isinstance(hardware, HardwareModel) else get_hardware(hardware)


def resolve_model(model: str | ModelSpec) -> ModelSpec:
    """Accept a catalog key or a ready ``ModelSpec``."""
    return model if isinstance(model, ModelSpec) else get_model(model)
