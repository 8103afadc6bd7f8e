"""The Ray Serve ingress deployment: hetserve's OpenAI-compatible HTTP API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import hmac
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from gateway import errors
from fleet.api import FleetView
from fleet.config import FleetConfig
from fleet.live import apply_live
from gateway.limits import read_body
from gateway.metrics import GatewayMetrics
from gateway.outliers import OutlierDetector
from gateway.responses import CHAT, TEXT
from gateway.auth import Caller, KeyStore, fleet_keys
from gateway.service import CompletionService, Finished
from gateway.tokens import counter_for_pool
from gateway.fleet_state import FleetState
from gateway.liveness import DownWatch
from gateway.profiles import ProfileStore
from gateway.relay_http import HttpPools
from gateway.trace_recorder import TraceRecorder
from gateway import dashboard
from gateway.recent import RecentRequests
from workers import tracing
from routing import LatencyPredictor, RoutingConfig, RoutingConfigError, build_router, load_routing_config

log = logging.getLogger("hetserve.gateway")

api = FastAPI(title="hetserve", description="OpenAI-compatible gateway over mixed-hardware pools")
api.include_router(dashboard.router)
_OPEN_PATHS = ("/health", "/ready", "/metrics")
_COMPLETION_PATHS = {"/v1/chat/completions": CHAT, "/v1/completions": TEXT}


def _log_to_stderr() -> None:
    """hetserve's warnings and errors straight to the process's own stderr (the replica's log file).

    Without a handler of their own they reach ``sys.stderr`` through logging's
    last resort, and when Serve logs to files only (``RAY_SERVE_LOG_TO_STDERR=0``)
    it replaces ``sys.stderr`` with its ``ray.serve`` logger at INFO, which the
    gateway's WARNING level (below) would then drop.
    """
    logger = logging.getLogger("hetserve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class _CompletionsFastPath:
    """ASGI middleware: ``POST`` to the two completion endpoints skips FastAPI's routing layers.

    Every other path (and a completion path with another method, a 405) goes
    through FastAPI as before. The endpoints below stay declared, so the
    OpenAPI schema and the method check still name them.
    Why: at one client with 1-token answers the gateway replica's CPU per
    request is on the client's latency; routing, dependency solving and the
    exception wrappers it skips are measured by ``bench/asgi_layers.py``
    (``docs/benchmarks.md``, "1-token requests: the gateway's CPU per request").
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            kind = _COMPLETION_PATHS.get(path[len(root):] if root and path.startswith(root) else path)
            if kind is not None:
                # Serve's own way to the replica's instance (what its class-based FastAPI views use).
                gateway = serve.get_replica_context().servable_object
                response = await gateway.complete(kind, Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


api.add_middleware(_CompletionsFastPath)


def _serve_request_id(request: Request) -> str:
    """The id Ray Serve's proxy echoes as ``x-request-id`` (the client's, or one it made)."""
    from ray.serve.context import _get_serve_request_context

    return _get_serve_request_context().request_id or request.headers.get("x-request-id") or uuid.uuid4().hex


@serve.deployment(
    name="gateway",
    max_ongoing_requests=1024,
    ray_actor_options={"num_cpus": 0},
    # WARNING: Serve builds an access-log record for every request before its filter drops it.
    logging_config={"enable_access_log": False, "log_level": "WARNING"},
)
@serve.ingress(api)
class Gateway:
    async def __init__(
        self, fleet: dict[str, Any], pools: dict[str, Any], admin_key: str | None = None, base_dir: str | None = None,
        token: str = "",
    ):
        _log_to_stderr()
        self.fleet = FleetConfig.model_validate(fleet)
        tracing.configure(self.fleet.tracing, "gateway")
        self.admin_key = admin_key
        self.metrics = GatewayMetrics()
        self.keys = KeyStore(fleet_keys(self.fleet.gateway.api_keys, self.fleet.gateway.keys_file, base_dir))
        failover = self.fleet.gateway.failover
        self.state = FleetState(
            self.fleet.pools, outliers=OutlierDetector(failover.ejection_base_s, failover.ejection_max_s),
            down_after_failed_polls=self.fleet.gateway.down_after_failed_polls,
        )
        down_watch = DownWatch(is_down=lambda pool: self.state.pools[pool].down)
        self.state.on_down(down_watch.pool_down)
        self.profiles = ProfileStore(self.fleet, Path(base_dir) if base_dir else None)
        self.state.profiles = self.profiles.profiles
        self.pools = HttpPools(pools, token, on_unreachable=self.state.unreachable)
        self.predictor = LatencyPredictor()  # kept across routing changes: what it learned stays
        counters = {}
        for p in self.fleet.pools:
            for m in p.models:
                if m not in counters or not counters[m].exact:
                    counters[m] = counter_for_pool(p.engine, p.model)
        self._set_routing(self.fleet.routing)
        self.recent = RecentRequests()
        self.recorder = TraceRecorder(self.fleet.gateway.record_trace) if self.fleet.gateway.record_trace else None
        self.service = CompletionService(
            self.pools, self.state, lambda: self.router, counters, self.metrics,
            on_finished=self._finished, recorder=self.recorder,
            failover=failover, max_json_depth=self.fleet.gateway.max_json_depth, down_watch=down_watch,
            timeouts=self.fleet.gateway.timeouts, max_active=self.fleet.gateway.max_ongoing_requests,
        )
        errors.install_handlers(api, lambda body: self.metrics.error(body.payload["error"]["type"], body.status))
        # One round of polls before Serve sends this replica traffic: a gateway that replaces another (a
        # `serve deploy` that changes the fleet) knows every running pool replica from its first request on.
        # Bounded by poll_timeout_s per pool; pools still starting are polled on by the loop.
        await self._poll_once()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    # -- configuration ----------------------------------------------------

    def _set_routing(self, routing: RoutingConfig | dict[str, Any]) -> None:
        config = routing if isinstance(routing, RoutingConfig) else load_routing_config(routing)
        p = config.predictor
        self.predictor.alpha, self.predictor.min_factor, self.predictor.max_factor = p.alpha, p.min_factor, p.max_factor
        self.router = build_router(config, clock=time.monotonic, predictor=self.predictor)
        self.routing_config = config
        self.metrics.policy = config.policy

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Ray Serve ``user_config`` (``fleet.live``): routing and live gateway settings, without a restart.

        Serve calls it after ``__init__`` and again on each ``serve deploy`` that changes only it;
        requests in flight keep their pool.
        """
        self.fleet = apply_live(self.fleet, user_config)
        self._set_routing(self.fleet.routing)
        gateway = self.fleet.gateway
        self.state.down_after_failed_polls = gateway.down_after_failed_polls
        self.state.outliers.base_s, self.state.outliers.max_s = gateway.failover.ejection_base_s, gateway.failover.ejection_max_s
        self.service.set_failover(gateway.failover)
        log.info("reconfigured: policy %s", self.routing_config.policy)

    def _authorize_admin(self, request: Request) -> None:
        if not self.admin_key:
            raise errors.PermissionDenied("admin endpoints are disabled: start the gateway with --admin-key")
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, self.admin_key):
            raise errors.AuthenticationError("Incorrect or missing admin key (Authorization: Bearer ...)")

    @api.get("/admin/routing")
    async def get_routing(self, request: Request) -> dict[str, Any]:
        self._authorize_admin(request)
        return self.routing_config.model_dump(exclude_none=True)

    @api.put("/admin/routing")
    async def put_routing(self, request: Request) -> dict[str, Any]:
        """Replace the routing policy now; requests in flight keep the pool they have."""
        self._authorize_admin(request)
        body = await self._body(request)
        try:
            config = json.loads(body)
        except json.JSONDecodeError as exc:
            raise errors.InvalidRequest(f"the body is not valid JSON: {exc}") from None
        try:
            self._set_routing(config)
        except RoutingConfigError as exc:
            raise errors.InvalidRequest(str(exc), param="routing") from None
        return self.routing_config.model_dump(exclude_none=True)

    async def _body(self, request: Request) -> bytes:
        return await read_body(request.headers.get("content-length"), request.stream(), self.fleet.gateway.max_body_bytes)

    # -- lifecycle --------------------------------------------------------

    async def drain(self, timeout_s: float) -> int:
        """Refuse new requests (503) and wait up to ``timeout_s`` for those in flight; returns those left.

        Called by ``hetserve serve`` on SIGTERM, through a deployment handle.
        """
        self.service.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.service.active and loop.time() < deadline:
            await asyncio.sleep(0.1)
        log.info("drained: %d request(s) still in flight", self.service.active)
        return self.service.active

    def ready_pools(self) -> dict[str, Any]:
        """Which pools can serve now: per pool, per model, and in all (``all_pools_ready``)."""
        pools = {
            p.name: {
                "ready": p.ready, "healthy": p.healthy, "starting": p.starting,
                "ejected_for_s": p.ejected_for_s, "models": p.models,
            }
            for p in self.state.describe()
        }
        models = {m: [n for n, p in pools.items() if p["healthy"] and m in p["models"]] for m in self.fleet.models()}
        return {
            "ready": all(models.values()) and not self.service.draining,
            "all_pools_ready": all(p["ready"] for p in pools.values()),
            "draining": self.service.draining,
            "pools": pools,
            "models": models,
        }

    # -- background -------------------------------------------------------

    async def _poll_once(self) -> None:
        async def one(name: str) -> None:
            try:
                stats = await asyncio.wait_for(self.pools.stats(name), timeout=self.fleet.gateway.poll_timeout_s)
                self.state.record_stats(name, stats)
            except Exception as exc:  # an unreachable pool is unhealthy, not fatal
                self.state.record_failure(name, f"{type(exc).__name__}: {exc}")
                if not self.state.pools[name].starting():  # a pool that served and stopped answering: eject it now
                    reason = f"stats poll failed: {type(exc).__name__}: {str(exc)[:150]}"
                    self.metrics.pool_failed(name, self.state.outliers.failure(name, reason))

        # One poll per replica a pool should have, at once: Serve spreads them, so the
        # gateway learns every replica's endpoint (gateway.relay_http).
        await asyncio.gather(*(one(n) for n, rec in self.state.pools.items() for _ in range(max(1, rec.spec.replicas))))
        self.metrics.update_pools(self.state.describe())
        if self.recorder is not None:
            self.recorder.flush()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.fleet.gateway.poll_interval_s)
            await self._poll_once()

    # -- auth -------------------------------------------------------------

    def _authorize(self, request: Request) -> Caller | None:
        return self.keys.authenticate(request.headers.get("authorization"))

    # -- routes -----------------------------------------------------------

    @api.api_route("/health", methods=["GET", "HEAD"])  # HEAD: load balancers' and probes' cheap check
    async def health(self) -> dict[str, Any]:
        """Liveness: the gateway answers. ``pools`` says which are routable now; see ``/ready``."""
        pools = {p.name: p.healthy for p in self.state.describe()}
        return {"status": "ok", "pools": pools}

    @api.api_route("/ready", methods=["GET", "HEAD"])
    async def ready(self) -> JSONResponse:
        """Readiness: 200 while every model has a pool that can serve it, else (or while draining) 503."""
        state = self.ready_pools()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @api.get("/metrics")
    async def metrics_text(self) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.get("/v1/models")
    async def list_models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {"object": "list", "data": [self._model_card(m) for m in self.fleet.models()]}

    @api.get("/v1/models/{model_id:path}")
    async def retrieve_model(self, model_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        if model_id not in self.fleet.models():
            raise errors.ModelNotFound(f"The model '{model_id}' does not exist", param="model")
        return self._model_card(model_id)

    def _model_card(self, model: str) -> dict[str, Any]:
        pools = [p.name for p in self.fleet.pools if model in p.models]
        return {"id": model, "object": "model", "created": 0, "owned_by": "hetserve", "pools": pools}

    # Declared for the OpenAPI schema and the 405 on another method; under Serve a POST is
    # answered by ``_CompletionsFastPath`` before FastAPI's router sees it.
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        return await self.complete(CHAT, request)

    @api.post("/v1/completions")
    async def completions(self, request: Request):
        return await self.complete(TEXT, request)

    async def complete(self, kind: str, request: Request):
        """One chat or text completion: the answer, or the error in OpenAI's shape."""
        try:
            caller = self._authorize(request)
            body = await self._body(request)
            return await self.service.handle(kind, body, request.headers, _serve_request_id(request), caller)
        except Exception as exc:  # answered here: raised, Serve logs each one with its traceback (a 429 storm's cost)
            answer = errors.error_body(exc)
            self.metrics.error(answer.payload["error"]["type"], answer.status)
            return answer.response()

    def _finished(self, f: Finished) -> None:
        if f.timed:  # the profiles and the forecast learn latency only from a measured first token
            self.profiles.observe(f)
        if f.prediction is not None and f.timed:
            per_seq = f.output_tokens // max(f.shape.sequences, 1)
            tpot_ms = (f.e2e_s - f.ttft_s) / (per_seq - 1) * 1e3 if per_seq > 1 else None
            self.predictor.observe(f.pool, f.prediction, f.ttft_s * 1e3, tpot_ms)
        self.recent.add(
            f.shape.model, f.pool, f.route_reason, f.prompt_tokens, f.output_tokens, f.ttft_s, f.e2e_s, f.energy_j,
            f.prediction,
        )
        if f.caller is not None:
            self.metrics.key_usage(f.caller, f.prompt_tokens, f.output_tokens, f.energy_j)

    @api.get("/v1/fleet")
    async def fleet(self, request: Request, profiles: bool = True) -> dict[str, Any]:
        """Pools, their live state and (unless ``?profiles=false``) their efficiency profiles."""
        self._authorize(request)
        pools = self.state.describe()
        if profiles:
            described = self.profiles.describe()
            pools = [p.model_copy(update={"profile": described.get(p.name)}) for p in pools]
        return FleetView(policy=self.routing_config.policy, pools=pools).model_dump(mode="json")

    @api.get("/v1/requests/recent")
    async def recent_requests(self, request: Request, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """The last finished requests (newer than ``after``) with pool and route reason, and the policy."""
        self._authorize(request)
        return {
            "policy": self.routing_config.policy,
            "routing": self.routing_config.model_dump(mode="json", exclude_none=True),
            "last_seq": self.recent.last_seq,
            "requests": [r.model_dump() for r in self.recent.after(after, max(1, min(limit, 256)))],
        }

    @api.post("/v1/routing/explain")
    async def explain(self, request: Request) -> dict[str, Any]:
        """Rank the pools for a chat or completion body without running it."""
        self._authorize(request)
        body = await self._body(request)
        kind = CHAT if b'"messages"' in body else TEXT
        _, _, shape, decision = self.service.plan(kind, body, request.headers)
        return {
            "policy": decision.policy,
            "reason": decision.reason,
            "shape": dataclasses.asdict(shape),
            "ranked": [
                {
                    "pool": r.name,
                    "replica": r.replica or None,
                    "score": r.score,
                    "scores": r.scores,
                    "batch": r.batch,
                    "cell": dataclasses.asdict(r.cell) if r.cell else None,
                    "prediction": r.prediction and r.prediction.to_dict(),
                }
                for r in decision.ranked
            ],
            "dropped": [
                {"pool": d.name, "replica": d.replica or None, "why": d.why,
                 "prediction": d.prediction and d.prediction.to_dict()}
                for d in decision.dropped
            ],
        }


from gateway.build import build  # noqa: E402,F401  Serve's import path: `serve run gateway.app:build fleet=FILE`
