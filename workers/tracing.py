"""OpenTelemetry tracing for the gateway and its pools; off by default.

One request makes a gateway span (``chat {model}`` / ``text_completion
{model}``, GenAI semantic conventions plus ``hetserve.*`` attributes), a
``route`` child for the routing decision, and in the pool replica a
``generate`` span joined to the same trace: the W3C ``traceparent`` travels
inside the request dict across Ray Serve.

Exporters: ``otlp`` (OTLP over HTTP to ``otlp_endpoint``), ``console``, or
``file`` (one JSON line per span in ``directory``/spans-<pid>.jsonl, for
tests and offline inspection). When tracing is off no span is created at all.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

_tracer = None


class TracingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["off", "otlp", "console", "file"] = "off"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    directory: str | None = None
    service_name: str = "hetserve"

    @field_validator("exporter", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        """YAML reads a bare ``off`` as false."""
        return "off" if v is False else v


class _JsonLinesExporter:
    """A SpanExporter writing one JSON object per finished span."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self._path = os.path.join(directory, f"spans-{os.getpid()}.jsonl")

    def export(self, spans) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with open(self._path, "a") as f:
            for s in spans:
                f.write(json.dumps({
                    "name": s.name,
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                    "service": s.resource.attributes.get("service.name"),
                    "attributes": dict(s.attributes or {}),
                    "duration_ms": (s.end_time - s.start_time) / 1e6,
                }) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def configure(spec: TracingSpec | dict | None, component: str) -> None:
    """Set up this process's tracer (gateway or one pool replica)."""
    global _tracer
    spec = TracingSpec.model_validate(spec or {})
    if spec.exporter == "off":
        _tracer = None
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": spec.service_name, "hetserve.component": component}))
    if spec.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=spec.otlp_endpoint)))
    elif spec.exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        # Batched, so no request waits on the file: spans land within half a second.
        exporter = _JsonLinesExporter(spec.directory or "traces")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    _tracer = provider.get_tracer("hetserve")


def enabled() -> bool:
    return _tracer is not None


def start_span(name: str, attributes: dict[str, Any] | None = None, *, parent=None, carrier: dict | None = None):
    """Start a span (None when tracing is off) under ``parent`` or a remote ``carrier``; end it with :func:`end_span`."""
    if _tracer is None:
        return None
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    if parent is not None:
        context = trace.set_span_in_context(parent)
    elif carrier:
        context = extract(carrier)
    else:
        context = None
    return _tracer.start_span(name, context=context, attributes=_clean(attributes))


def end_span(span, attributes: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    if span is None:
        return
    if attributes:
        span.set_attributes(_clean(attributes))
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


def carrier_for(span) -> dict[str, str] | None:
    """W3C trace headers for ``span``, to send with a request to a pool."""
    if span is None:
        return None
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if v is not None}
