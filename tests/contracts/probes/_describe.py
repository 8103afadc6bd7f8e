"""What a probe reports about an object, as plain JSON.

Probes run in the environment that holds a vendor package (often a side
virtual environment), describe what they find and print one JSON document;
the contract tests, in the main environment, hold the expectations.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import sys
from importlib import metadata
from typing import Any


def params(obj: Any) -> dict[str, dict[str, str]]:
    """Parameters of a callable, in order: name -> {"kind", "default"} (``"<required>"`` when none)."""
    found = {}
    for name, p in inspect.signature(obj).parameters.items():
        default = "<required>" if p.default is p.empty else repr(p.default)
        found[name] = {"kind": p.kind.name, "default": default}
    return found


def fields(cls: type) -> list[str]:
    """A dataclass's field names."""
    return [f.name for f in dataclasses.fields(cls)]


def members(cls: type[enum.Enum]) -> list[str]:
    return [m.name for m in cls]


def kind(obj: Any) -> str:
    """"coroutine", "asyncgen", "function", "class" or the type's name."""
    if inspect.isasyncgenfunction(obj):
        return "asyncgen"
    if inspect.iscoroutinefunction(obj):
        return "coroutine"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return type(obj).__name__


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def error(exc: BaseException) -> dict[str, str]:
    """An exception as its class path and message."""
    return {"type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc)}


def emit(found: dict) -> None:
    """The probe's one line of output (last on stdout, whatever the library logs before it)."""
    sys.stdout.write("\n" + json.dumps(found) + "\n")
