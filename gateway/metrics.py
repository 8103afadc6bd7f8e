"""Prometheus metrics of the gateway, in a registry of its own (``GET /metrics``)."""

from __future__ import annotations

from fleet.api import PoolView
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("hetserve_requests", "Finished requests", ["model", "pool", "status"], registry=r)
        self.errors = Counter("hetserve_errors", "Requests answered with an error", ["type", "status"], registry=r)
        self.routed_total = Counter("hetserve_routing_decisions", "Routing decisions", ["model", "pool", "policy"], registry=r)
        self.ttft = Histogram("hetserve_time_to_first_token_seconds", "Time to first token", ["model", "pool"], buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("hetserve_request_duration_seconds", "End-to-end request latency", ["model", "pool"], buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("hetserve_prompt_tokens", "Prompt tokens", ["model", "pool"], registry=r)
        self.output_tokens = Counter("hetserve_output_tokens", "Output tokens", ["model", "pool"], registry=r)
        self.energy = Counter("hetserve_attributed_energy_joules", "Energy above idle attributed to requests", ["pool"], registry=r)
        self.in_flight = Gauge("hetserve_pool_in_flight_sequences", "Sequences in flight per pool", ["pool"], registry=r)
        self.queue = Gauge("hetserve_pool_waiting_sequences", "Sequences waiting in pool engines", ["pool"], registry=r)
        self.j_per_token = Gauge("hetserve_pool_joules_per_output_token", "Attributed joules per output token, cumulative", ["pool"], registry=r)
        self.pool_energy_total = Gauge("hetserve_pool_energy_total_joules", "Pool energy including idle draw", ["pool", "source"], registry=r)
        self.key_requests = Counter("hetserve_key_requests", "Finished requests per API key", ["key"], registry=r)
        self.key_tokens = Counter("hetserve_key_tokens", "Tokens per API key", ["key", "kind"], registry=r)
        self.key_energy = Counter("hetserve_key_energy_joules", "Attributed energy per API key", ["key"], registry=r)
        self.retries = Counter("hetserve_retries", "Requests moved to another pool after a pool failed before the first byte", ["model", "failed_pool"], registry=r)
        self.retries_denied = Counter("hetserve_retries_denied", "Retries refused by the retry budget", ["model"], registry=r)
        self.pool_failures = Counter("hetserve_pool_failures", "Requests a pool failed (5xx, dead replica)", ["pool"], registry=r)
        self.ejections = Counter("hetserve_pool_ejections", "Times a pool was ejected by outlier detection", ["pool"], registry=r)
        self.ejected = Gauge("hetserve_pool_ejected", "1 while the pool is ejected", ["pool"], registry=r)
        self.ready = Gauge("hetserve_pool_ready", "1 once the pool answered a poll, and while its polls are neither failing (down) nor stale", ["pool"], registry=r)
        self.streams_broken = Counter("hetserve_streams_broken", "Streams that ended in an error after their first bytes", ["model", "pool"], registry=r)
        self.policy = "unknown"

    def routed(self, model: str, pool: str) -> None:
        self.routed_total.labels(model, pool, self.policy).inc()

    def error(self, type_: str, status: int) -> None:
        self.errors.labels(type_, str(status)).inc()

    def retried(self, model: str, failed_pool: str) -> None:
        self.retries.labels(model, failed_pool).inc()

    def retry_denied(self, model: str) -> None:
        self.retries_denied.labels(model).inc()

    def pool_failed(self, pool: str, ejected_now: bool) -> None:
        self.pool_failures.labels(pool).inc()
        if ejected_now:
            self.ejections.labels(pool).inc()
        self.ejected.labels(pool).set(1)

    def stream_broken(self, model: str, pool: str) -> None:
        self.streams_broken.labels(model, pool).inc()

    def finished(self, model, pool, status, ttft_s, e2e_s, prompt_tokens, output_tokens, energy_j) -> None:
        """``ttft_s`` None: not known (a whole answer whose replica did not time its first token)."""
        self.requests.labels(model, pool, status).inc()
        if status == "ok":
            if ttft_s is not None:
                self.ttft.labels(model, pool).observe(ttft_s)
            self.e2e.labels(model, pool).observe(e2e_s)
        self.prompt_tokens.labels(model, pool).inc(prompt_tokens)
        self.output_tokens.labels(model, pool).inc(output_tokens)
        self.energy.labels(pool).inc(energy_j)

    def key_usage(self, key: str, prompt_tokens: int, output_tokens: int, energy_j: float) -> None:
        """Usage of one finished request, under its key's name (never the key)."""
        self.key_requests.labels(key).inc()
        self.key_tokens.labels(key, "prompt").inc(prompt_tokens)
        self.key_tokens.labels(key, "completion").inc(output_tokens)
        self.key_energy.labels(key).inc(energy_j)

    def update_pools(self, pools: list[PoolView]) -> None:
        for p in pools:
            self.in_flight.labels(p.name).set(p.in_flight)
            self.queue.labels(p.name).set(p.waiting)
            if p.output_tokens:
                self.j_per_token.labels(p.name).set(p.energy_joules / p.output_tokens)
            self.pool_energy_total.labels(p.name, p.power_source).set(p.energy_total_joules)
            self.ejected.labels(p.name).set(1 if p.ejected_for_s else 0)
            self.ready.labels(p.name).set(1 if p.ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
