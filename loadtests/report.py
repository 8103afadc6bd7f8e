"""Run reports: console table, JSON (summary + every request), CSV, HTML, and A/B comparison."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from loadtests.html_report import render_html
from loadtests.metrics import Stats, Summary
from loadtests.result import RequestResult
from loadtests.runner import RunOutcome

FORMAT = "hetserve-loadtest/1"
CSV_FIELDS = (
    "index", "model", "pool", "request_id", "status", "error_type", "error", "scheduled_s", "sent_s",
    "prompt_tokens", "output_tokens", "ttft_ms", "tpot_ms", "e2e_ms", "chunks", "slo_ttft_ms", "slo_tpot_ms",
)  # fmt: skip
_LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))


def request_row(result: RequestResult) -> dict:
    """One request as a flat row (times in ms, run-relative times in s)."""
    return {
        "index": result.index,
        "model": result.model,
        "pool": result.pool,
        "request_id": result.request_id,
        "status": result.status,
        "error_type": result.error_type,
        "error": result.error,
        "scheduled_s": result.scheduled_s,
        "sent_s": result.sent_s,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "ttft_ms": _ms(result.ttft_s),
        "tpot_ms": _ms(result.tpot_s),
        "e2e_ms": _ms(result.e2e_s),
        "chunks": len(result.chunk_s),
        "slo_ttft_ms": result.slo_ttft_ms,
        "slo_tpot_ms": result.slo_tpot_ms,
    }


def to_json(outcome: RunOutcome) -> dict:
    """The whole run; ``chunk_ms`` keeps every content chunk's arrival (ITL is its differences)."""
    return {
        "format": FORMAT,
        "label": outcome.spec.label,
        "spec": outcome.spec.model_dump(mode="json", exclude={"api_key"}),  # never write secrets
        "stopped_by": outcome.stopped_by,
        "summary": outcome.summary.model_dump(mode="json"),
        "steps": [{"rate": s.rate, "summary": s.summary.model_dump(mode="json")} for s in outcome.steps],
        "requests": [
            {**request_row(r), "chunk_ms": [round(t * 1000, 4) for t in r.chunk_s]} for r in outcome.results
        ],
    }


def write_reports(outcome: RunOutcome, out_dir: str | Path) -> list[Path]:
    """Write ``<label>.json``, ``<label>.csv`` and ``<label>.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / outcome.spec.label
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".html")]
    paths[0].write_text(json.dumps(to_json(outcome), indent=1), encoding="utf-8")
    with open(paths[1], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(request_row(r) for r in outcome.results)
    paths[2].write_text(render_html(outcome, console_summary(outcome)), encoding="utf-8")
    return paths


def console_summary(outcome: RunOutcome) -> str:
    s = outcome.summary
    lines = [
        f"==== hetserve load test: {outcome.spec.label} (stopped: {outcome.stopped_by}) ====",
        _kv("Requests ok / failed", f"{s.ok} / {s.failed}"),
        _kv("Duration (s)", f"{s.duration_s:.2f}"),
        _kv("Request throughput (req/s)", f"{s.request_throughput:.2f}"),
        _kv("Output throughput (tok/s)", f"{s.output_throughput:.1f}"),
        _kv("Total token throughput (tok/s)", f"{s.total_token_throughput:.1f}"),
        _kv("Goodput (req/s)", f"{s.goodput:.2f}  ({s.good}/{s.requests} within targets, {s.within_targets:.0%}; {_targets(s)})"),
        f"{'':<32}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}",
    ]
    for name, key in _LATENCIES:
        stats: Stats = getattr(s, key)
        values = (_num(getattr(stats, p)) for p in ("mean", "p50", "p90", "p99"))
        lines.append(f"{name + ' (ms)':<32}" + "".join(f"{v:>10}" for v in values))
    lines.append(_kv("Dispatch lag p99 (ms)", _num(s.dispatch_lag_ms.p99)))
    if s.client_lag is not None:
        lines.append(_kv("Client loop lag p50/p99 (ms)", f"{_num(s.client_loop_lag_ms.p50)} / {_num(s.client_loop_lag_ms.p99)}"))
        lines.append(_kv("Client lag", s.client_lag.describe()))
    if s.errors:
        lines.append(_kv("Errors", ", ".join(f"{k} {v}" for k, v in s.errors.items())))
    if s.pools:
        lines.append(_kv("Pools (share of ok requests)", ", ".join(f"{k} {p.share:.0%}" for k, p in s.pools.items())))
    lines += _energy_lines(s)
    if outcome.steps:
        lines.append(
            f"{'rate':>8}{'req/s':>10}{'tok/s':>10}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p50':>10}{'failed':>8}"
        )
        for step in outcome.steps:
            t = step.summary
            lines.append(
                f"{step.rate:>8.2f}{t.request_throughput:>10.2f}{t.output_throughput:>10.1f}"
                f"{_num(t.ttft_ms.p50):>10}{_num(t.ttft_ms.p99):>10}{_num(t.tpot_ms.p50):>10}{t.failed:>8}"
            )
    return "\n".join(lines)


def load_summary(path: str | Path) -> tuple[str, Summary]:
    """Label and summary of a JSON report."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} report")
    return data["label"], Summary.model_validate(data["summary"])


def compare(a_path: str | Path, b_path: str | Path) -> str:
    """Side-by-side table of two reports with B/A ratios (e.g. two routing policies)."""
    (a_label, a), (b_label, b) = load_summary(a_path), load_summary(b_path)
    rows = [
        ("Request throughput (req/s)", a.request_throughput, b.request_throughput),
        ("Output throughput (tok/s)", a.output_throughput, b.output_throughput),
        ("Goodput (req/s)", a.goodput, b.goodput),
        ("Failed requests", a.failed, b.failed),
    ]
    for name, key in _LATENCIES:
        for pct in ("p50", "p99"):
            rows.append((f"{name} {pct} (ms)", getattr(getattr(a, key), pct), getattr(getattr(b, key), pct)))
    rows += [
        ("J/token attributed", a.energy and a.energy.j_per_token, b.energy and b.energy.j_per_token),
        ("J/token incl. idle", a.energy and a.energy.j_per_token_total, b.energy and b.energy.j_per_token_total),
    ]
    for pool in sorted(set(a.pools) | set(b.pools)):
        rows.append((f"Share on {pool} (%)", _share(a, pool), _share(b, pool)))
    width = max(len(a_label), len(b_label), 10) + 2
    lines = [f"{'':<30}{a_label:>{width}}{b_label:>{width}}{'B/A':>8}"]
    for name, x, y in rows:
        ratio = f"{y / x:.2f}" if x and y is not None else "-"
        lines.append(f"{name:<30}{_sig(x):>{width}}{_sig(y):>{width}}{ratio:>8}")
    return "\n".join(lines)


def _energy_lines(s: Summary) -> list[str]:
    if s.energy is None:
        return [_kv("Energy", s.energy_note or "not measured")]
    e = s.energy
    policy = f" [policy {e.policy}]" if e.policy else ""
    lines = [_kv("Energy J/token (attributed / total)", _pair(e.j_per_token, e.j_per_token_total) + policy)]
    for p in e.pools:
        lines.append(_kv(f"  {p.name} ({p.hardware}, {p.power_source})", _pair(p.j_per_token, p.j_per_token_total)))
    return lines


def _pair(attributed: float | None, total: float | None) -> str:
    return f"{_num(attributed, 4)} / {_num(total, 4)}"


def _targets(s: Summary) -> str:
    given = [f"{k.removesuffix('_ms').upper()}<={v:g}ms" for k, v in s.targets.model_dump().items() if v is not None]
    return ", ".join(given) if given else "no run-wide targets"


def _share(s: Summary, pool: str) -> float:
    return s.pools[pool].share * 100 if pool in s.pools else 0.0


def _kv(key: str, value: str) -> str:
    return f"{key:<38}{value}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _sig(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)
