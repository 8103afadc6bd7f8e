"""OpenAI parameters that change the answer: routed to pools that honour them, refused where none can.

A parameter counts only when it would change the answer: clients such as
LangChain send ``presence_penalty: 0`` or ``logprobs: false`` by default,
and those neutral values pass. Parameters some engines honour (penalties,
logit bias, structured output and vLLM's own sampling extensions ``top_k``,
``min_p``, ``repetition_penalty``, ``min_tokens``: vLLM's; log-probabilities:
vLLM's and the emulated engine's; tools: vLLM pools with a tool-call parser) become the
request's *features*; the router's capability filter sends the request only
to pools whose engine has them all (``workers.spec.PoolSpec.capabilities``),
else a 400 names them. The rest (the deprecated ``functions``, audio, ...)
no pool honours: refused with a 400 that names them, rather than silently
ignored.
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

#: Parameters some engines honour: each in effect is a routing feature of the request (read from
#: ``gateway.service._feature_params``, where ``logprobs`` is the number of alternatives or None).
_FEATURES: dict[str, _Rule] = {
    "frequency_penalty": _nonzero,
    "presence_penalty": _nonzero,
    "logit_bias": _truthy,
    # vLLM's sampling extensions, each off at its neutral value
    "top_k": lambda v: v is not None and v not in (0, -1),
    "min_p": _nonzero,
    "repetition_penalty": lambda v: v is not None and v != 1,
    "min_tokens": _nonzero,
}
FEATURES: dict[str, dict[str, _Rule]] = {
    CHAT: {**_FEATURES, "response_format": _not_text_format, "logprobs": _set, "tools": _set},
    TEXT: {**_FEATURES, "logprobs": _set},
}

#: Parameters no engine honours yet.
RULES: dict[str, dict[str, _Rule]] = {
    CHAT: {
        "functions": _truthy,
        "function_call": _not_none_choice,
        "audio": _set,
        "modalities": _not_text_only,
        "prediction": _set,
        "web_search_options": _set,
    },
    TEXT: {
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


def request_features(kind: str, data: dict[str, Any]) -> frozenset[str]:
    """The parameters in ``data`` that only some engines honour (the router filters pools by them)."""
    return frozenset(name for name, in_effect in FEATURES[kind].items() if name in data and in_effect(data[name]))


def engine_params(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Those parameters as ``workers.engine.SamplingParams`` takes them; a malformed one is a 400 naming it."""
    out: dict[str, Any] = {}
    for name in ("presence_penalty", "frequency_penalty", "min_p", "repetition_penalty"):
        if data.get(name) is not None:
            out[name] = float(data[name])
    if data.get("top_k") not in (None, -1):
        out["top_k"] = data["top_k"]
    if data.get("min_tokens") is not None:
        out["min_tokens"] = data["min_tokens"]
    if data.get("logit_bias"):
        try:
            out["logit_bias"] = {int(k): float(v) for k, v in data["logit_bias"].items()}
        except (TypeError, ValueError):
            raise errors.InvalidRequest("logit_bias maps token ids to a bias", param="logit_bias") from None
        if any(not -100 <= v <= 100 for v in out["logit_bias"].values()):
            raise errors.InvalidRequest("logit_bias values lie in [-100, 100]", param="logit_bias")
    if data.get("logprobs") is not None:
        out["logprobs"] = data["logprobs"]
    if kind == CHAT and _not_text_format(data.get("response_format")):
        out["response_format"] = _response_format(data["response_format"])
    return out


def _response_format(value: Any) -> dict:
    if not isinstance(value, dict) or value.get("type") not in ("json_object", "json_schema"):
        raise errors.InvalidRequest(
            "response_format.type is one of text, json_object, json_schema", param="response_format"
        )
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise errors.InvalidRequest("response_format.json_schema.schema must be a JSON schema object",
                                        param="response_format")
    return value
