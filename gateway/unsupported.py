"""OpenAI parameters no pool honours yet: refused with a 400 rather than silently ignored.

A parameter is refused only when it would change the answer: clients such
as LangChain send ``presence_penalty: 0`` or ``logprobs: false`` by default,
and those neutral values pass. None of hetserve's engines applies
penalties, logit bias, log-probabilities, tools or structured output today
(``workers.engine.SamplingParams`` carries none of them), so a client that
asks for them learns so instead of getting an answer that ignored them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway import errors
from gateway.responses import CHAT, TEXT


def _set(v: Any) -> bool:
    return v is not None


def _truthy(v: Any) -> bool:
    return bool(v)


def _nonzero(v: Any) -> bool:
    return v is not None and v != 0


def _not_none_choice(v: Any) -> bool:
    return v is not None and v != "none"


def _not_text_format(v: Any) -> bool:
    return v is not None and not (isinstance(v, dict) and v.get("type") == "text")


def _not_text_only(v: Any) -> bool:
    return v is not None and v != ["text"]


def _more_than_one(v: Any) -> bool:
    return v is not None and v != 1


_Rule = Callable[[Any], bool]

_COMMON: dict[str, _Rule] = {
    "frequency_penalty": _nonzero,
    "presence_penalty": _nonzero,
    "logit_bias": _truthy,
}

RULES: dict[str, dict[str, _Rule]] = {
    CHAT: {
        **_COMMON,
        "logprobs": _truthy,
        "top_logprobs": _nonzero,
        "tools": _truthy,
        "tool_choice": _not_none_choice,
        "functions": _truthy,
        "function_call": _not_none_choice,
        "response_format": _not_text_format,
        "audio": _set,
        "modalities": _not_text_only,
        "prediction": _set,
        "web_search_options": _set,
    },
    TEXT: {
        **_COMMON,
        "logprobs": _set,
        "best_of": _more_than_one,
    },
}


def refuse_unsupported(kind: str, data: dict[str, Any]) -> None:
    """Raise :class:`errors.InvalidRequest` naming every parameter in ``data`` no pool can honour."""
    refused = [name for name, in_effect in RULES[kind].items() if name in data and in_effect(data[name])]
    if refused:
        raise errors.InvalidRequest(
            f"{', '.join(refused)}: not supported by any pool of this gateway (omit it, or send its neutral value)",
            param=refused[0],
            code="unsupported_parameter",
        )
