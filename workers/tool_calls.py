"""Tool calling on a pool: what a request's tools make the engine generate, and the calls in its output.

A request with ``tools`` reaches only pools whose engine has a tool-call
parser (a vLLM pool with ``engine_args.tool_call_parser``, the name
``vllm serve --tool-call-parser`` takes). As vLLM's own server does:

- ``tool_choice: "required"`` or a named function: the output is
  constrained to JSON (structured outputs) that is the call, whatever the
  model, and parsed here;
- ``"auto"``: the output is free and the pool's parser finds the calls in
  it (``VLLMEngine.extract_tool_calls``).

The pool generates the whole output before it answers (calls are known only
at the end), so a streamed tool request gets its answer in one chunk.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

_ANY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ExtractedToolCalls:
    """An output split into the text that is not a call and the calls."""

    content: str | None
    calls: list[ToolCall]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _functions(tools: list[dict]) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"] for t in tools}


def forced_name(tool_choice: Any) -> str | None:
    """The function a named ``tool_choice`` forces, else ``None``."""
    return tool_choice["function"]["name"] if isinstance(tool_choice, dict) else None


def forced_schema(tools: list[dict], tool_choice: Any, parallel_tool_calls: bool | None) -> dict | None:
    """The JSON schema the output must follow ("required" or a named function), ``None`` for "auto"."""
    functions = _functions(tools)
    name = forced_name(tool_choice)
    if name is not None:
        return functions[name].get("parameters") or _ANY_OBJECT
    if tool_choice != "required":
        return None
    call = [
        {"type": "object", "properties": {"name": {"type": "string", "enum": [n]}, "parameters": f.get("parameters") or _ANY_OBJECT},
         "required": ["name", "parameters"]}
        for n, f in functions.items()
    ]  # fmt: skip
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": call}}
    if parallel_tool_calls is False:
        schema["maxItems"] = 1
    return schema


def parse_forced(text: str, tool_choice: Any) -> ExtractedToolCalls:
    """The calls in an output generated under :func:`forced_schema`; text that is not one stays content
    (an output cut short by ``max_tokens``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return ExtractedToolCalls(text, [])
    name = forced_name(tool_choice)
    if name is not None:
        return ExtractedToolCalls(None, [ToolCall(new_call_id(), name, json.dumps(value))])
    if not isinstance(value, list) or not all(isinstance(c, dict) and "name" in c for c in value):
        return ExtractedToolCalls(text, [])
    calls = [ToolCall(new_call_id(), str(c["name"]), json.dumps(c.get("parameters", {}))) for c in value]
    return ExtractedToolCalls(None, calls)
