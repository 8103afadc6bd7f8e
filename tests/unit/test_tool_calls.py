"""Tool calling: the schema a forced choice imposes, the calls parsed back, routing to pools with a
tool-call parser, and OpenAI's response shapes, whole and streamed (no Ray, no vLLM)."""

from __future__ import annotations

import json

import pytest

from fleet.config import parse_fleet
from gateway import errors
from gateway.fleet_state import FleetState
from gateway.metrics import GatewayMetrics
from gateway.responses import CHAT
from gateway.service import CompletionService
from gateway.tokens import TokenCounter
from routing import build_router, load_routing_config
from tests.unit.test_service import FakeStream
from workers import wire
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry
from workers.tool_calls import ToolCall, forced_schema, parse_forced
from workers.vllm_engine import _template_messages

MODEL = "m"
MSG = [{"role": "user", "content": "weather in Seoul?"}]
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Seoul", "Paris"]}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "parameters": PARAMS}},
    {"type": "function", "function": {"name": "time"}},
]
NAMED = {"type": "function", "function": {"name": "weather"}}
FLEET = parse_fleet({"pools": [
    {"name": "emu", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL]},
    {"name": "plain", "hardware": "h100", "engine": "vllm", "model": "some/model", "models": [MODEL]},
    {"name": "tools", "hardware": "h100", "engine": "vllm", "model": "some/model", "models": [MODEL],
     "engine_args": {"tool_call_parser": "hermes"}},
]})  # fmt: skip


def test_a_named_choice_constrains_the_output_to_that_functions_arguments():
    assert forced_schema(TOOLS, NAMED, None) == PARAMS
    assert forced_schema(TOOLS, "auto", None) is None
    assert forced_schema(TOOLS, {"type": "function", "function": {"name": "time"}}, None)["type"] == "object"


def test_required_constrains_the_output_to_a_list_of_calls_of_the_given_functions():
    schema = forced_schema(TOOLS, "required", None)
    assert schema["type"] == "array" and schema["minItems"] == 1 and "maxItems" not in schema
    names = [c["properties"]["name"]["enum"] for c in schema["items"]["anyOf"]]
    assert names == [["weather"], ["time"]]
    assert schema["items"]["anyOf"][0]["properties"]["parameters"] == PARAMS
    assert forced_schema(TOOLS, "required", False)["maxItems"] == 1  # parallel_tool_calls: false


def test_forced_outputs_parse_into_calls_and_a_cut_output_stays_text():
    (call,) = parse_forced('{"city": "Seoul"}', NAMED).calls
    assert call.name == "weather" and json.loads(call.arguments) == {"city": "Seoul"} and call.id.startswith("call_")
    found = parse_forced('[{"name": "time", "parameters": {}}, {"name": "weather", "parameters": {"city": "Paris"}}]',
                         "required")  # fmt: skip
    assert [c.name for c in found.calls] == ["time", "weather"] and found.content is None
    cut = parse_forced('{"city": "Se', NAMED)  # max_tokens ran out
    assert cut.calls == [] and cut.content == '{"city": "Se'


def test_only_a_vllm_pool_with_a_parser_honours_tools():
    caps = {p.name: p.capabilities() for p in FLEET.pools}
    assert "tools" in caps["tools"] and "tools" not in caps["plain"] and "tools" not in caps["emu"]


def test_earlier_calls_reach_the_chat_template_with_their_arguments_as_objects():
    history = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Seoul"}'}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"}]  # fmt: skip
    rendered = _template_messages(history)
    assert rendered[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Seoul"}
    assert history[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Seoul"}'  # not changed in place
    assert _template_messages(MSG) is MSG


def test_tool_calls_cross_the_wire():
    item = RelayItem("", 9, 5, "tool_calls", Telemetry(1.0, 0.1, ReplicaStats("r")), None,
                     [ToolCall("call_1", "weather", '{"city": "Seoul"}')])  # fmt: skip
    assert wire.decode_item(wire.encode_item(item)) == item


class ToolPools:
    """A pool that answers every request with one call (what a pool with a parser sends back)."""

    def __init__(self):
        self.requests: list[PoolRequest] = []

    def stream(self, pool: str, request: PoolRequest, replica=""):
        self.requests.append(request)
        call = ToolCall("call_1", "weather", '{"city": "Seoul"}')
        return FakeStream([RelayItem("", 9, 5, "tool_calls", Telemetry(1.0, 0.1, ReplicaStats("r")), None, [call])])


def _service():
    state = FleetState(FLEET.pools)
    for name in ("emu", "plain", "tools"):
        state.record_stats(name, ReplicaStats(f"{name}1", max_model_len=4096))
    state.acquire("tools", 3)  # least-load would prefer the others
    router = build_router(load_routing_config({"policy": "least-load"}))
    pools = ToolPools()
    return CompletionService(pools, state, lambda: router, {MODEL: TokenCounter()}, GatewayMetrics()), pools


async def test_a_tool_request_goes_to_the_pool_with_a_parser_whole_and_answers_in_openai_shape():
    service, pools = _service()
    body = {"model": MODEL, "messages": MSG, "max_tokens": 32, "tools": TOOLS, "tool_choice": NAMED}
    resp = await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert resp.headers["x-hetserve-pool"] == "tools"
    sent = pools.requests[0]
    assert sent.tools == TOOLS and sent.tool_choice == NAMED and sent.whole
    choice = json.loads(resp.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Seoul"}'}}]


async def test_a_streamed_tool_request_gets_its_calls_in_a_chunk():
    service, pools = _service()
    body = {"model": MODEL, "messages": MSG, "max_tokens": 32, "tools": TOOLS, "stream": True}
    resp = await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert pools.requests[0].whole and pools.requests[0].tool_choice == "auto"
    text = "".join([c async for c in resp.body_iterator])
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    (chunk,) = [json.loads(e) for e in events[:-1]]
    delta = chunk["choices"][0]["delta"]
    assert delta["tool_calls"][0] == {"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "weather", "arguments": '{"city": "Seoul"}'}}
    assert chunk["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_choice_none_sends_no_tools_anywhere():
    service, pools = _service()
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2, "tools": TOOLS, "tool_choice": "none"}
    resp = await service.handle(CHAT, json.dumps(body).encode(), {}, "rid")
    assert resp.headers["x-hetserve-pool"] != "tools" and pools.requests[0].tools is None


@pytest.mark.parametrize("extra,param", [
    ({"tool_choice": "auto"}, "tool_choice"),  # no tools
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools"),
])
async def test_malformed_tool_requests_are_400s_naming_the_parameter(extra, param):
    service, _ = _service()
    with pytest.raises(errors.APIError) as info:
        await service.handle(CHAT, json.dumps({"model": MODEL, "messages": MSG, **extra}).encode(), {}, "rid")
    body = errors.error_body(info.value)
    assert body.status == 400 and body.payload["error"]["param"].startswith(param)


async def test_tools_pinned_to_a_pool_without_a_parser_are_refused_by_name():
    service, _ = _service()
    body = {"model": MODEL, "messages": MSG, "tools": TOOLS}
    with pytest.raises(errors.InvalidRequest) as info:
        await service.handle(CHAT, json.dumps(body).encode(), {"x-hetserve-pool-pin": "plain"}, "rid")
    assert info.value.param == "tools" and info.value.code == "unsupported_parameter"
