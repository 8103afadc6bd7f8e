"""The life of one completion request inside the gateway.

parse → validate → shape → route → fan out one pool stream per sequence →
answer (whole, or as SSE) → record. Errors are raised as typed exceptions
and turned into HTTP by ``gateway.errors``. A stream is only committed to
(status 200 sent) once every sequence produced its first item, so a bad
prompt or an over-long context is a clean 400, not a broken stream.

Until that commitment a pool's failure is invisible to the client: the
request moves to the next ranked pool (at most ``max_attempts`` pools, and
only while the retry budget allows) and the failed pool is ejected for a
while (``gateway.outliers``). A stream that breaks after its first bytes
ends with an OpenAI-shaped error event and ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.responses import JSONResponse, StreamingResponse

from fleet.config import FailoverSpec, TimeoutSpec
from gateway import errors
from gateway.admission import Admission
from gateway.limits import check_depth
from gateway.liveness import DownWatch, PoolDown
from gateway.metrics import GatewayMetrics
from gateway.outliers import RetryBudget
from gateway.protocol import ChatCompletionRequest, CompletionRequest
from gateway.responses import CHAT, Choice, ChunkWriter, completion_body, usage
from gateway.shaping import OutputLengthEstimator, build_shape
from gateway.tokens import TokenCounter
from gateway.unsupported import engine_params, refuse_unsupported, request_features
from workers import tracing
from workers.engine import SamplingParams
from workers.protocol import PoolRequest, RelayItem, ReplicaStats
from workers.tool_calls import forced_name
from routing import Decision, NoFeasiblePool, NoHealthyPool, Prediction, RequestShape, UnsupportedFeature
from gateway.auth import Caller
from fleet.api import PIN_HEADER, POOL_HEADER, ROUTE_REASON_HEADER, SLO_TPOT_HEADER, SLO_TTFT_HEADER

#: max_tokens when a client sets none: the emulated engines never stop on their own.
DEFAULT_MAX_TOKENS = 512
#: What a client is told to wait while pools start or the gateway drains.
RETRY_AFTER_S = 5


class PoolStream(Protocol):
    """One sequence's relay items, in order (``gateway.relay_http.HttpStream``; fakes in tests)."""

    def __aiter__(self) -> "PoolStream": ...

    async def __anext__(self) -> RelayItem: ...

    def ready(self) -> list[RelayItem]:
        """The items already received behind the last one handed out, without waiting (may be none)."""

    def cancel(self) -> None:
        """Stop the sequence: the pool aborts its engine request."""


class PoolClient(Protocol):
    """How the service reaches pools (HTTP to the pool replicas in the app, fakes in tests)."""

    def stream(self, pool: str, request: PoolRequest, replica: str = "") -> PoolStream:
        """``request`` on ``replica`` of ``pool`` (the router's choice; "": any)."""


class Router(Protocol):
    def choose(self, shape: RequestShape, pools: list) -> Any: ...


@dataclass
class Finished:
    """What the service learned from one finished request, for profiles and metrics."""

    pool: str
    shape: RequestShape
    batch: int  # the batch the router expected the request to join
    ttft_s: float
    e2e_s: float
    prompt_tokens: int
    output_tokens: int
    energy_j: float
    replica_stats: list[ReplicaStats]
    caller: str | None = None  # the API key's name, when keys are on
    prediction: Prediction | None = None  # the chosen pool's forecast, when the router made one
    route_reason: str = ""  # the router's reason for the pool
    timed: bool = True  # ttft_s is a first token's time (False: a whole answer whose replica did not say)


@dataclass
class _Sequence:
    index: int
    stream: PoolStream
    first: RelayItem | None = None


class CompletionService:
    def __init__(
        self,
        pools: PoolClient,
        fleet_state,
        router_ref: Callable[[], Router],
        counters: dict[str, TokenCounter],
        metrics: GatewayMetrics,
        on_finished: Callable[[Finished], None] = lambda f: None,
        clock: Callable[[], float] = time.monotonic,
        recorder=None,
        failover: FailoverSpec | None = None,
        max_json_depth: int = 32,
        timeouts: TimeoutSpec | None = None,
        max_active: int = 1024,
        down_watch: DownWatch | None = None,
    ):
        self.pools = pools
        self.state = fleet_state
        self._router = router_ref
        self.counters = counters
        self.outputs = OutputLengthEstimator()
        self.metrics = metrics
        self.on_finished = on_finished
        self.clock = clock
        self.recorder = recorder  # gateway.trace_recorder.TraceRecorder, or None
        self.set_failover(failover or FailoverSpec())
        self.max_json_depth = max_json_depth
        self.timeouts = timeouts or TimeoutSpec()
        self.admission = Admission(max_active, clock=clock)
        self.down_watch = down_watch or DownWatch()
        self.active = 0  # requests between arrival and their last byte (what a drain waits for)
        self.draining = False

    def set_failover(self, failover: FailoverSpec) -> None:
        """Attempts and retry budget (a fresh budget window) from ``failover``."""
        self.failover = failover
        self.budget = RetryBudget(
            failover.retry_budget_ratio, failover.retry_budget_min, failover.retry_budget_window_s, self.clock
        )

    # -- parsing ----------------------------------------------------------

    def _parse(self, kind: str, body: bytes):
        check_depth(body, self.max_json_depth)
        try:
            data = json.loads(body, parse_constant=_not_json)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise errors.InvalidRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise errors.InvalidRequest("the body must be a JSON object")
        model = ChatCompletionRequest if kind == CHAT else CompletionRequest
        try:
            req = model.model_validate(data)
        except ValidationError as exc:
            raise errors.to_api_error(exc) from None
        refuse_unsupported(kind, data)
        if kind == CHAT:
            _check_chat_options(req)
        if req.stream_options is not None and not req.stream:
            raise errors.InvalidRequest("stream_options is only allowed when stream is true", param="stream_options")
        limit = req.requested_max_tokens()
        if req.min_tokens and limit is not None and req.min_tokens > limit:
            raise errors.InvalidRequest(f"min_tokens ({req.min_tokens}) exceeds max_tokens ({limit})",
                                        param="min_tokens")
        return req

    @staticmethod
    def _slo(headers, name: str) -> float | None:
        raw = headers.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise errors.InvalidRequest(f"header {name} must be a number of milliseconds", param=name) from None
        if not math.isfinite(value):
            raise errors.InvalidRequest(f"header {name} must be a finite number of milliseconds", param=name)
        if value <= 0:
            raise errors.InvalidRequest(f"header {name} must be positive", param=name)
        return value

    # -- the request ------------------------------------------------------

    def plan(self, kind: str, body: bytes, headers):
        """Parse, validate, shape and route a request without running it."""
        req = self._parse(kind, body)
        return (req, *self._route(kind, req, headers))

    def _route(self, kind: str, req, headers):
        if req.model not in self.counters:
            raise errors.ModelNotFound(
                f"The model '{req.model}' does not exist; served: {', '.join(self.counters)}", param="model"
            )
        if kind == CHAT:
            try:
                prompts = [{"messages": req.message_dicts(), **_tool_fields(req)}]
            except ValueError as exc:
                raise errors.InvalidRequest(str(exc), param="messages") from None
        else:
            prompts = req.prompts()
        pools = self._candidates(headers, req.model)
        context = max((p.max_seq_len for p in pools if req.model in p.models), default=None)
        shape = build_shape(
            req.model, prompts, req.n, req.requested_max_tokens(), self.counters[req.model], self.outputs,
            self._slo(headers, SLO_TTFT_HEADER), self._slo(headers, SLO_TPOT_HEADER),
            request_features(kind, _feature_params(req)), context=context,
        )
        try:
            decision = self._router().choose(shape, pools)
        except UnsupportedFeature as exc:
            raise errors.InvalidRequest(str(exc), param=exc.missing[0], code="unsupported_parameter") from None
        except NoFeasiblePool as exc:
            raise _too_long(exc, kind, shape, context, req.requested_max_tokens() is not None) from None
        except NoHealthyPool:
            starting = self.state.starting(req.model)
            if not starting:
                raise
            raise errors.PoolsStarting(
                f"the pools serving '{req.model}' are still starting ({', '.join(starting)}); "
                f"retry in {RETRY_AFTER_S} s (GET /ready lists the pools that can serve)",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        return prompts, shape, decision

    async def handle(self, kind: str, body: bytes, headers, request_id: str, caller: Caller | None = None):
        """One completion; ``caller`` (an authenticated key) is admitted against its limits once routed."""
        if self.draining:
            raise errors.ShuttingDown(
                "the gateway is shutting down and takes no new requests", headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        self.admission.admit(self.active)
        self.active += 1
        committed = False  # a stream returned: its context ends the request
        try:
            response = await self._handle(kind, body, headers, request_id, caller)
            committed = isinstance(response, StreamingResponse)
            return response
        finally:
            if not committed:
                self.active -= 1
                self.admission.ended()

    async def _handle(self, kind: str, body: bytes, headers, request_id: str, caller: Caller | None):
        start = self.clock()
        req = self._parse(kind, body)
        operation = "chat" if kind == CHAT else "text_completion"
        root = tracing.start_span(f"{operation} {req.model}", {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": req.model,
            "gen_ai.request.max_tokens": req.requested_max_tokens(),
            "gen_ai.request.temperature": req.temperature,
            "gen_ai.request.top_p": req.top_p,
            "gen_ai.request.seed": req.seed,
            "gen_ai.request.choice.count": req.n,
            "hetserve.request_id": request_id,
            "hetserve.stream": bool(req.stream),
        })
        try:
            return await self._run(kind, req, headers, request_id, start, root, caller)
        except BaseException as exc:
            tracing.end_span(root, error=exc)
            raise

    async def _run(self, kind: str, req, headers, request_id: str, start: float, root, caller: Caller | None):
        route_span = tracing.start_span("route", parent=root)
        try:
            prompts, shape, decision = self._route(kind, req, headers)
            limits = {} if caller is None else caller.admit(req.model, _token_estimate(shape))
        except BaseException as exc:
            tracing.end_span(route_span, error=exc)
            raise
        pool = decision.ranked[0].name
        route_facts = {
            "hetserve.policy": decision.policy,
            "hetserve.pool": pool,
            "hetserve.hardware": decision.best.pool.hardware,
            "hetserve.emulated": decision.best.pool.emulated,
            "hetserve.route_reason": decision.reason,
            "hetserve.batch": decision.best.batch,
            "hetserve.prompt_tokens_estimate": shape.prompt_tokens,
        }
        tracing.end_span(route_span, route_facts)
        if root is not None:
            root.set_attributes({k: v for k, v in route_facts.items() if v is not None})
        if self.recorder is not None:
            self.recorder.begin(request_id)
        max_tokens = req.requested_max_tokens()
        params = {
            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
            "fit_context": max_tokens is None,  # the engine lowers the default to what the context leaves
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "seed": req.seed,
            "stop": req.stop_list(),
            "ignore_eos": req.ignore_eos,
            **engine_params(kind, _feature_params(req)),
        }
        self.budget.request()
        try:
            return await self._attempts(kind, req, decision, prompts, params, shape, request_id, start, root, limits,
                                        caller)
        except BaseException:  # failed, or cancelled (the client left before the first byte): no record
            if self.recorder is not None:  # an open record would hold back every later one (TraceRecorder.flush)
                self.recorder.drop(request_id)
            raise

    async def _attempts(self, kind: str, req, decision: Decision, prompts, params: dict, shape, request_id: str,
                        start: float, root, limits: dict[str, str], caller: Caller | None):
        """The ranked pools in turn, while the failure is the pool's and the retry budget allows. A pool is
        tried once: the relay already tried each of its replicas before calling the pool failed, so a
        second replica ranked below is skipped for the next pool."""
        ranked = _one_per_pool(decision.ranked)[: self.failover.max_attempts]
        failure: BaseException | None = None
        for attempt, choice in enumerate(ranked):
            if attempt:
                # Leaving a pool declared down adds no load to a fleet in trouble: not a budgeted retry.
                if not isinstance(failure, PoolDown) and not self.budget.try_retry():
                    self.metrics.retry_denied(req.model)
                    break
                self.metrics.retried(req.model, ranked[attempt - 1].name)
            try:
                return await self._attempt(
                    kind, req, choice, decision, prompts, params, shape, request_id, start, root, limits, caller,
                )
            except Exception as exc:
                if not _pool_failed(exc):
                    failure = exc
                    break
                self.eject_pool(choice.name, exc)
                failure = exc
        raise failure

    def eject_pool(self, pool: str, exc: BaseException) -> None:
        err = errors.to_api_error(exc)
        self.metrics.pool_failed(pool, self.state.outliers.failure(pool, err.message[:200]))

    async def _attempt(
        self, kind: str, req, choice, decision: Decision, prompts, params: dict, shape, request_id: str, start: float,
        root, limits: dict[str, str], caller: Caller | None,
    ):
        """Run the request on one pool; raises before any byte went out, so the caller may try another."""
        reason, promised = decision.reason, decision.promised_tpot_ms
        pool, replica = choice.name, choice.replica
        self.metrics.routed(req.model, pool)
        # Tool calls are known only at the end of the output: the pool answers a tool request whole.
        whole = not req.stream or "tools" in shape.features
        # Counted before the first await: a request routed meanwhile must see this one's load.
        self.state.acquire(pool, shape.sequences, shape.prompt_tokens, shape.max_new_tokens, promised, replica)
        try:
            seqs = await self.down_watch.guard(pool, self._open(
                pool, replica, request_id, prompts, req.n, params, tracing.carrier_for(root), whole
            ), abandon=_cancel_all)
        except BaseException:
            self.state.release(pool, shape.sequences, shape.prompt_tokens, shape.max_new_tokens, promised,
                               prefilled=False, replica=replica)
            raise
        self.state.first_tokens(pool, shape.sequences, shape.prompt_tokens, replica)
        self.state.outliers.success(pool)
        ttft = self.clock() - start
        # Ray Serve's proxy sets x-request-id (the client's, or its own): request_id is that one.
        headers_out = {
            POOL_HEADER: pool,
            ROUTE_REASON_HEADER: _header_safe(reason),
            **limits,
        }
        rid = ("chatcmpl-" if kind == CHAT else "cmpl-") + request_id
        created = int(time.time())
        ctx = _Context(self, kind, rid, created, req.model, pool, choice.batch, shape, start, ttft, len(prompts), req.n)
        ctx.span, ctx.request_id, ctx.caller, ctx.reason = root, request_id, caller and caller.name, reason
        ctx.prediction, ctx.promised_tpot_ms, ctx.replica, ctx.whole = choice.prediction, promised, replica, whole
        if req.stream:
            writer = ChunkWriter(kind, rid, created, req.model, req.include_usage)
            ctx.streaming = True
            return _ClosingStream(
                ctx.sse(seqs, writer), lambda: ctx.close(seqs), media_type="text/event-stream", headers=headers_out
            )
        try:
            results = await asyncio.gather(*(ctx.collect(s) for s in seqs))
            ctx.ok = True
        except asyncio.CancelledError:  # the client went away (Serve cancels its request)
            ctx.cancelled = True
            raise
        finally:
            ctx.close(seqs)
        return JSONResponse(ctx.body(results), headers=headers_out)

    def _candidates(self, headers, model: str | None = None) -> list:
        pools = self.state.snapshot(model)
        pin = headers.get(PIN_HEADER)
        if pin is None:
            return pools
        pinned = [p for p in pools if p.name == pin]
        if not pinned:
            raise errors.InvalidRequest(f"header {PIN_HEADER}: no pool named {pin!r}", param=PIN_HEADER)
        if model is not None and model not in pinned[0].models:
            raise errors.InvalidRequest(
                f"header {PIN_HEADER}: pool {pin!r} does not serve {model!r} (it serves {', '.join(pinned[0].models)})",
                param=PIN_HEADER,
            )
        return pinned

    async def _open(
        self, pool: str, replica: str, request_id: str, prompts, n: int, params: dict, trace: dict | None,
        whole: bool,
    ) -> list[_Sequence]:
        """Start one pool stream per sequence and wait for each one's first item (the caller counts the load)."""
        seqs = []
        t = self.timeouts
        progress_s = t.idle_s / 2 if whole else None
        try:
            for p_index, prompt in enumerate(prompts):
                for j in range(n):
                    index = p_index * n + j
                    seq_params = dict(params)
                    if params["seed"] is not None:
                        seq_params["seed"] = params["seed"] + j
                    request = PoolRequest(
                        f"{request_id}-{index}", SamplingParams(**seq_params), trace=trace, whole=whole,
                        progress_s=progress_s, **prompt,
                    )
                    seqs.append(_Sequence(index, self.pools.stream(pool, request, replica)))
            # A whole (non-streamed) answer's first item is the answer, or an empty progress item once the
            # engine has run for progress_s; then items at most idle_s apart, as in a stream (_next).
            limit = t.first_token_s + (progress_s if whole else 0.0)
            try:
                firsts = await asyncio.wait_for(asyncio.gather(*(s.stream.__anext__() for s in seqs)), limit)
            except TimeoutError:
                what = "no answer" if whole else "no first token"
                raise errors.PoolTimeout(f"pool {pool} sent {what} within {limit:g} s") from None
        except BaseException:
            _cancel_all(seqs)
            raise
        for s, first in zip(seqs, firsts):
            s.first = first
        return seqs


def _cancel_all(seqs: list[_Sequence]) -> None:
    """Close every pool stream of a request (aborts the engines' requests)."""
    for s in seqs:
        s.stream.cancel()


def _one_per_pool(ranked: list) -> list:
    """Each pool's best-ranked entry (a pool of several replicas is ranked per replica), in rank order."""
    seen: set[str] = set()
    return [c for c in ranked if not (c.name in seen or seen.add(c.name))]


class _ClosingStream(StreamingResponse):
    """A streamed response that closes its request however it ends: the body's
    own ``finally`` does when it was read; this does when it never was (the
    client left before the first byte), so the pool's count and the TPOT
    promised there are given back."""

    def __init__(self, content, close: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._close = close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close()


class _Context:
    """State of one request after its streams opened; releases the pool exactly once."""

    def __init__(self, service: CompletionService, kind, rid, created, model, pool, batch, shape, start, ttft, n_prompts, n):
        self.s = service
        self.kind, self.rid, self.created, self.model, self.pool, self.batch = kind, rid, created, model, pool, batch
        self.shape, self.start, self.ttft = shape, start, ttft
        self.n_prompts, self.n = n_prompts, n
        self.prompt_tokens: dict[int, int] = {}
        self.output_tokens: dict[int, int] = {}
        self.energy_j = 0.0
        self.replica_stats: list[ReplicaStats] = []
        self.closed = False
        self.ok = False
        self.cancelled = False  # the client left before the end (status "cancelled", not "error")
        self.span = None
        self.request_id = ""
        self.caller: str | None = None
        self.reason = ""
        self.streaming = False  # its response is a stream: close() ends the service's count of the request
        self.prediction: Prediction | None = None
        self.promised_tpot_ms: float | None = None  # what the pool keeps for this request (Decision)
        self.replica = ""  # the replica the router chose ("": the pool's own pick)
        self.whole = False  # the pool answers each sequence whole: its first item comes at the end
        self.decode_s: list[float | None] = []  # per whole answer: the replica's time from first token to end

    def _note(self, index: int, item: RelayItem) -> None:
        self.prompt_tokens[index] = item.prompt_tokens
        self.output_tokens[index] = item.output_tokens
        t = item.telemetry
        if t is not None:
            self.energy_j += t.energy_j
            self.replica_stats.append(t.stats)
            if self.whole:
                self.decode_s.append(None if t.first_token_s is None else max(t.engine_s - t.first_token_s, 0.0))

    def usage(self) -> dict:
        # A prompt counts once however many choices (n) it produced, as in OpenAI's API.
        prompt = sum(self.prompt_tokens.get(i * self.n, 0) for i in range(self.n_prompts))
        return usage(prompt, sum(self.output_tokens.values()))

    async def collect(self, seq: _Sequence) -> Choice:
        parts = []
        logprobs = None
        async for batch in self._batches_of(seq):
            for item in batch:
                self._note(seq.index, item)
                parts.append(item.text)
                if item.logprobs is not None:
                    logprobs = (logprobs or []) + item.logprobs
        return Choice("".join(parts), item.finish_reason, logprobs, item.tool_calls)

    async def _next(self, seq: _Sequence):
        """The stream's next item, or :class:`errors.PoolTimeout` after ``timeouts.idle_s`` without one."""
        idle_s = self.s.timeouts.idle_s
        try:
            async with asyncio.timeout(idle_s):  # a timer per item, no task (this is the streaming hot path)
                return await seq.stream.__anext__()
        except TimeoutError:
            raise errors.PoolTimeout(f"pool {self.pool} sent no token for {idle_s:g} s") from None

    async def _batches_of(self, seq: _Sequence) -> AsyncIterator[list[RelayItem]]:
        """The sequence's items up to the finishing one (a stream that just ends is a failure), in batches:
        each item that had to be waited for, with those received behind it."""
        batch = [seq.first, *seq.stream.ready()]
        while True:
            yield batch
            if batch[-1].finish_reason is not None:
                return
            try:
                batch = [await self._next(seq), *seq.stream.ready()]
            except StopAsyncIteration:
                raise errors.Unavailable("the pool ended a stream without finishing it") from None

    def body(self, results: list[Choice]) -> dict:
        return completion_body(self.kind, self.rid, self.created, self.model, results, self.usage())

    async def _batches(self, seqs: list[_Sequence]) -> AsyncIterator[list[tuple[int, RelayItem]]]:
        """Items of all sequences, each sequence in order, in batches of what is ready together."""
        if len(seqs) == 1:
            seq = seqs[0]
            async for batch in self._batches_of(seq):
                yield [(seq.index, i) for i in batch]
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(seq: _Sequence) -> None:
            try:
                async for batch in self._batches_of(seq):
                    queue.put_nowait([(seq.index, i) for i in batch])
            except Exception as exc:
                queue.put_nowait(exc)

        tasks = [asyncio.create_task(pump(s)) for s in seqs]
        try:
            remaining = len(seqs)
            while remaining:
                got = [await queue.get()]
                while not queue.empty():
                    got.append(queue.get_nowait())
                batch = []
                for part in got:
                    if isinstance(part, Exception):
                        if batch:  # what came before the failure goes out first
                            yield batch
                        raise part
                    batch += part
                    remaining -= sum(1 for _, item in part if item.finish_reason is not None)
                yield batch
        finally:
            for t in tasks:
                t.cancel()

    async def sse(self, seqs: list[_Sequence], writer: ChunkWriter) -> AsyncIterator[str]:
        """The response's SSE events; what arrived together goes out in one write."""
        try:
            async for batch in self._batches(seqs):
                events = []
                for index, item in batch:
                    self._note(index, item)
                    if item.text or item.finish_reason is not None or item.logprobs or item.tool_calls:
                        events.append(
                            writer.delta(index, item.text, item.finish_reason, item.logprobs, item.tool_calls)
                        )  # an item with nothing to show (a whole answer's progress) is no event
                if events:
                    yield "".join(events)
            if writer.include_usage:
                yield writer.usage(self.usage())
            self.ok = True
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            self.cancelled = True
            raise
        except Exception as exc:  # after status 200: the error travels in the stream
            self.s.metrics.stream_broken(self.model, self.pool)
            if _pool_failed(exc):
                self.s.eject_pool(self.pool, exc)
            yield errors.error_body(exc).sse()
        finally:
            self.close(seqs)
        yield writer.done()

    def close(self, seqs: list[_Sequence]) -> None:
        if self.closed:
            return
        self.closed = True
        if self.streaming:
            self.s.active -= 1
            self.s.admission.ended()
        if not self.ok:
            _cancel_all(seqs)
        shape = self.shape
        self.s.state.release(self.pool, shape.sequences, shape.prompt_tokens, shape.max_new_tokens,
                             self.promised_tpot_ms, replica=self.replica)
        e2e = self.s.clock() - self.start
        timed = self._time_whole_answer(e2e)
        out = sum(self.output_tokens.values())
        status = "ok" if self.ok else "cancelled" if self.cancelled else "error"
        use = self.usage()
        tracing.end_span(self.span, {
            "gen_ai.usage.input_tokens": use["prompt_tokens"],
            "gen_ai.usage.output_tokens": use["completion_tokens"],
            "hetserve.energy_joules": self.energy_j,
            "hetserve.ttft_ms": self.ttft * 1e3,
            "hetserve.status": status,
        })
        self.s.metrics.finished(self.model, self.pool, status, self.ttft if timed else None, e2e,
                                self.usage()["prompt_tokens"], out, self.energy_j)
        for stats in self.replica_stats:
            self.s.state.record_stats(self.pool, stats)
        self._record(use, out, e2e)
        if self.ok:
            if self.shape.max_new_tokens and out:
                self.s.outputs.observe(self.model, out // max(self.shape.sequences, 1))
            self.s.on_finished(
                Finished(self.pool, self.shape, self.batch, self.ttft, e2e, self.usage()["prompt_tokens"], out,
                         self.energy_j, self.replica_stats, self.caller, self.prediction, self.reason, timed)
            )

    def _time_whole_answer(self, e2e: float) -> bool:
        """Whether ``ttft`` is a first token's time. A whole answer's first item is the answer: its TTFT
        is the end less the replica's time from its first token (the latest first token of ``n``
        sequences); without that (a replica that did not say) it is unknown, and ``ttft`` stays the time
        to the answer."""
        if not self.whole:
            return True
        if not self.decode_s or None in self.decode_s:
            return False
        self.ttft = max(e2e - min(self.decode_s), 0.0)
        return True

    def _record(self, use: dict, out: int, e2e: float) -> None:
        recorder = self.s.recorder
        if recorder is None:
            return
        if not self.ok:
            recorder.drop(self.request_id)
            return
        seqs = max(self.shape.sequences, 1)
        recorder.finish(
            self.request_id, self.model, use["prompt_tokens"] // max(self.n_prompts, 1), out // seqs, self.pool,
            self.ttft, e2e, self.energy_j / seqs, self.shape.slo_ttft_ms, self.shape.slo_tpot_ms,
        )


def _pool_failed(exc: BaseException) -> bool:
    """A failure of the pool (5xx), not of the request: worth another pool, and an ejection."""
    return errors.to_api_error(exc).status >= 500


def _check_chat_options(req) -> None:
    if req.top_logprobs is not None and not req.logprobs:
        raise errors.InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
    if req.tool_choice not in (None, "none") and not req.tools:
        raise errors.InvalidRequest("tool_choice is only allowed when tools are specified", param="tool_choice")
    name = forced_name(req.tool_choice_value())
    if name is not None and name not in {t.function.name for t in req.tools}:
        raise errors.InvalidRequest(f"tool_choice names function {name!r}, which is not in tools", param="tool_choice")


def _tool_fields(req) -> dict[str, Any]:
    """What a pool needs of a chat request's tools (``PoolRequest``), nothing when it uses none."""
    if not req.uses_tools():
        return {}
    return {"tools": req.tool_dicts(), "tool_choice": req.tool_choice_value(),
            "parallel_tool_calls": req.parallel_tool_calls}


def _feature_params(req) -> dict[str, Any]:
    """The parameters only some engines honour, as the client sent them (``response_format`` is an extra field)."""
    return {
        "presence_penalty": req.presence_penalty, "frequency_penalty": req.frequency_penalty,
        "logit_bias": req.logit_bias, "response_format": (req.model_extra or {}).get("response_format"),
        "logprobs": req.logprobs_k(),
        "tools": True if req.uses_tools() else None,
        "top_k": req.top_k, "min_p": req.min_p, "repetition_penalty": req.repetition_penalty,
        "min_tokens": req.min_tokens,
    }


#: The reasons' few non-ASCII signs, spelled in ASCII for a header (any other one becomes "?").
_HEADER_ASCII = str.maketrans({"×": "x", "≤": "<=", "≥": ">=", "µ": "u", "–": "-", "−": "-"})


def _header_safe(text: str) -> str:
    """``text`` as a header value: ASCII (RFC 9110 leaves anything else to the client's guess), at most 512 characters."""
    return text.translate(_HEADER_ASCII).encode("ascii", "replace").decode()[:512]


def _not_json(constant: str):
    """Python's JSON parser reads NaN and ±Infinity, which JSON has not."""
    raise ValueError(f"{constant} is not a JSON value")


def _too_long(exc: NoFeasiblePool, kind: str, shape: RequestShape, context: int | None, limited: bool):
    """No pool runs a sequence this long: in OpenAI's words where the longest context serving the model is
    known, blaming ``max_tokens`` when the prompt alone fits (and the client set it), else the prompt."""
    prompt_param = "messages" if kind == CHAT else "prompt"
    if context is None:
        return errors.InvalidRequest(str(exc), param=prompt_param, code="context_length_exceeded")
    total = shape.prompt_tokens + shape.max_new_tokens
    return errors.InvalidRequest(
        f"This model's maximum context length is {context} tokens. However, you requested {total} tokens "
        f"({shape.prompt_tokens} in the prompt, {shape.max_new_tokens} for the completion). "
        "Please reduce the length of the messages or completion.",
        param="max_tokens" if limited and shape.prompt_tokens < context else prompt_param,
        code="context_length_exceeded",
    )


def _token_estimate(shape: RequestShape) -> int:
    """Tokens a request counts against a key's per-minute budget at admission: every
    prompt plus the most it may generate (OpenAI counts ``max_tokens`` the same way)."""
    return shape.sequences * (shape.prompt_tokens + shape.max_new_tokens)
