"""A pool replica: the Ray Serve deployment that owns one engine adapter.

Ray Serve places, starts, health-checks and reconfigures replicas, and the
gateway polls :meth:`PoolReplica.stats` through a Serve handle. Tokens do
not cross Ray: each replica serves :meth:`PoolReplica.generate` on its own
internal HTTP endpoint (``workers.http_endpoint``), whose address the stats
carry, and the gateway relays from it over keep-alive connections. Errors
before the first token (bad input, context too long) are that endpoint's
HTTP status, so the gateway can answer with a proper status instead of a
broken stream.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import serve

from workers import tracing
from workers.adapters import make_engine
from workers.autoscaling import SEQUENCES_METRIC
from workers.engine import EngineRequest
from workers.hardware import get_hardware
from workers.http_endpoint import EndpointApp, EndpointServer
from workers.meters import build_meter
from workers.protocol import PoolRequest, RelayItem, ReplicaStats, Telemetry
from workers.relay import adaptive_window, coalesce, whole
from workers.replica_router import router_config
from workers.sampler import BackgroundSampledMeter
from workers.spec import PoolSpec
from workers.telemetry import EnergyLedger
from workers.tool_calls import forced_schema, parse_forced

#: Longest window for merging deltas into one relayed line (see workers.relay).
DEFAULT_RELAY_WINDOW_S = 0.05
#: Lines per second a replica aims for in all, and the shortest window. A line
#: over HTTP costs the gateway tens of microseconds (a Ray item cost ~1 ms), so
#: one stream alone gets every delta as it comes, as vLLM's own server sends it,
#: and only many streams together get merged (docs/architecture.md).
RELAY_ITEMS_PER_S = 2000.0
RELAY_MIN_WINDOW_S = 0.0


class PoolReplica:
    async def __init__(
        self, spec: dict[str, Any], relay_window_s: float = DEFAULT_RELAY_WINDOW_S, trace: dict | None = None,
        token: str = "",
    ):
        self.spec = PoolSpec.model_validate(spec)
        tracing.configure(trace, f"pool:{self.spec.name}")
        self.hardware = get_hardware(self.spec.hardware)
        self.relay_window_s = relay_window_s
        self._streams = 0
        self.engine = make_engine(self.spec)
        await self.engine.start()
        self.meter = BackgroundSampledMeter(
            build_meter(self.spec, self.engine, self.hardware, self.spec.max_ongoing_requests)
        ).start()
        self.ledger = EnergyLedger(self.meter, self.hardware.idle_watts_replica)
        self.replica_id = _replica_id()
        self._span_attributes = {
            "hetserve.pool": self.spec.name,
            "hetserve.hardware": self.spec.hardware,
            "hetserve.engine": self.spec.engine,
            "hetserve.engine_provenance": self.engine.provenance,
            "hetserve.replica": self.replica_id,
        }
        app = EndpointApp(self.replica_id, token, self.generate)
        self.endpoint = EndpointServer(app, ray.util.get_node_ip_address()).start()

    def _engine_request(self, request: PoolRequest) -> EngineRequest:
        if request.messages is not None:
            params = request.params
            schema = forced_schema(request.tools, request.tool_choice, request.parallel_tool_calls) if request.tools else None
            if schema is not None:  # "required" or a named function: the output is the call
                params = dataclasses.replace(params, tool_call_schema=schema)
            prompt = self.engine.render_chat(request.messages, request.tools)
            return EngineRequest(request.request_id, prompt=prompt, params=params)
        return EngineRequest(
            request.request_id, prompt=request.prompt, prompt_token_ids=request.prompt_token_ids, params=request.params,
        )

    async def generate(self, request: PoolRequest) -> AsyncIterator[RelayItem]:
        """Stream relay items; the last one carries the request's ``Telemetry``."""
        mark = self.ledger.mark(self.engine.stats().output_tokens_total)
        started = time.monotonic()
        span = tracing.start_span("generate", self._span_attributes, carrier=request.trace)
        n_out, error, energy = 0, None, None
        first_token: list[float] = []  # a whole answer's: when the engine's first output came
        self._streams += 1
        try:
            stream = self.engine.generate(self._engine_request(request))
            if request.whole or request.tools:
                items = whole(_noting_first(stream, first_token), request.progress_s)
            else:
                items = coalesce(stream, self._window)
            async for item in items:
                n_out = item.output_tokens
                if item.finish_reason is not None:
                    if request.tools:
                        item = self._with_tool_calls(item, request)
                    energy = self.ledger.attribute(mark, n_out, self.engine.stats().output_tokens_total)
                    first_s = first_token[0] - started if first_token else None
                    item = item._replace(
                        telemetry=Telemetry(energy, time.monotonic() - started, self._counters(), first_s))
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._streams -= 1
            tracing.end_span(span, {"gen_ai.usage.output_tokens": n_out, "hetserve.energy_joules": energy}, error)

    def _with_tool_calls(self, item: RelayItem, request: PoolRequest) -> RelayItem:
        """A tool request's whole output, split into its calls and the rest."""
        if request.tool_choice == "auto":
            found = self.engine.extract_tool_calls(item.text, request.tools)
        else:
            found = parse_forced(item.text, request.tool_choice)
        if not found.calls:
            return item
        calls = found.calls[:1] if request.parallel_tool_calls is False else found.calls  # a parser may find more
        return item._replace(text=found.content or "", finish_reason="tool_calls", tool_calls=calls)

    def _window(self) -> float:
        if self.relay_window_s <= 0:
            return 0.0
        return adaptive_window(self._streams, self.relay_window_s, RELAY_ITEMS_PER_S, RELAY_MIN_WINDOW_S)

    def _counters(self) -> ReplicaStats:
        """What the gateway keeps per replica, cheap enough to send with every finished request."""
        s = self.engine.stats()
        total_j, attributed_j = self.ledger.totals()
        return ReplicaStats(
            replica=self.replica_id,
            running=s.running,
            waiting=s.waiting,
            kv_cache_usage=s.kv_cache_usage,
            prompt_tokens_total=s.prompt_tokens_total,
            output_tokens_total=s.output_tokens_total,
            requests_finished=s.requests_finished,
            energy_total_j=total_j,
            energy_attributed_j=attributed_j,
            max_model_len=self.engine.max_model_len,
        )

    async def stats(self) -> ReplicaStats:
        """Everything the gateway polls: counters plus power and provenance (fails when the engine died)."""
        await self.engine.check_health()
        stats = self._counters()
        stats.watts = self.meter.watts()
        stats.power_source = self.meter.source
        stats.power_provenance = self.meter.describe().get("provenance", "measured")
        stats.engine_provenance = self.engine.provenance
        stats.endpoint = self.endpoint.url
        return stats

    def record_routing_stats(self) -> dict[str, Any]:
        """Feeds Ray Serve's request router: sequences this replica is busy with."""
        s = self.engine.stats()
        return {"running": s.running, "waiting": s.waiting}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Feeds Ray Serve's autoscaler (``workers.autoscaling``): requests reach this replica over
        its own endpoint, which Serve's request counts do not see."""
        s = self.engine.stats()
        return {SEQUENCES_METRIC: float(s.running + s.waiting)}

    async def check_health(self) -> None:
        """Serve's health check: a replica whose engine died is restarted."""
        await self.engine.check_health()

    async def __del__(self):
        await self.endpoint.stop()
        self.meter.close()
        await self.engine.shutdown()


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside Serve (tests drive the class directly)
        return f"local-{os.getpid()}"


def pool_deployment(
    spec: PoolSpec, relay_window_s: float = DEFAULT_RELAY_WINDOW_S, trace: dict | None = None, token: str = "",
    autoscaling_config: dict | None = None,
):
    """The bound Ray Serve deployment for one pool; ``token`` guards its replicas' internal endpoints;
    ``autoscaling_config`` replaces a fixed replica count."""
    return serve.deployment(
        PoolReplica,
        name=spec.name,
        num_replicas=None if autoscaling_config else spec.replicas,
        autoscaling_config=autoscaling_config,
        max_ongoing_requests=spec.max_ongoing_requests,
        ray_actor_options=spec.ray_actor_options(),
        health_check_period_s=10,
        logging_config={"enable_access_log": False},
        request_router_config=router_config(),
    ).bind(spec.model_dump(), relay_window_s, trace, token)


async def _noting_first(source: AsyncIterator, first: list[float]) -> AsyncIterator:
    """``source`` as is; ``first`` gets the time its first item came (a whole answer's first token)."""
    async for item in source:
        if not first:
            first.append(time.monotonic())
        yield item
