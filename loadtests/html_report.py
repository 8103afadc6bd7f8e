"""A self-contained HTML report: inline CSS, figures embedded as base64 PNG."""

from __future__ import annotations

from html import escape

from loadtests import plots
from loadtests.runner import RunOutcome

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card .v { font-size: 1.5em; font-weight: 600; }
.card .k { color: #666; font-size: .85em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
img { max-width: 100%; }
"""


def render_html(outcome: RunOutcome, console_text: str) -> str:
    s = outcome.summary
    energy = s.energy
    cards = [
        ("Throughput", f"{s.request_throughput:.2f} req/s"),
        ("Output", f"{s.output_throughput:.1f} tok/s"),
        ("TTFT p50", _ms(s.ttft_ms.p50)),
        ("TTFT p99", _ms(s.ttft_ms.p99)),
        ("Goodput", f"{s.goodput:.2f} req/s"),
        ("J/token attributed", _j(energy and energy.j_per_token)),
        ("J/token incl. idle", _j(energy and energy.j_per_token_total)),
        ("Failed", f"{s.failed} of {s.requests}"),
    ]
    if s.client_lag is not None and s.client_lag.share is not None:
        verdict = "client-bound" if s.client_lag.client_bound else "ok"
        cards.append((f"Client lag ({verdict})", f"{s.client_lag.share:.1%} of {s.client_lag.measured}"))
    figures = [
        ("Latency distributions", plots.latency_histograms(outcome.results)),
        ("TTFT over time, by pool", plots.ttft_timeline(outcome.results)),
        ("Pools: requests and energy", plots.pool_shares(s)),
    ]
    if outcome.steps:
        figures.insert(0, ("Sweep: throughput and latency vs offered rate",
                           plots.sweep_curves([st.rate for st in outcome.steps], [st.summary for st in outcome.steps])))
    body = [f"<h1>hetserve load test: {escape(outcome.spec.label)}</h1>",
            f"<p>{escape(outcome.spec.base_url)} · model {escape(str(outcome.spec.model or 'server default'))} · "
            f"{escape(outcome.spec.load.arrival)} · stopped: {escape(outcome.stopped_by)}</p>",
            '<div class="cards">']
    body += [f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div></div>'
             for k, v in cards]
    body.append("</div>")
    if energy is None:
        body.append(f"<p><em>{escape(s.energy_note or 'no energy figures')}</em></p>")
    for title, png in figures:
        if png:
            body.append(f'<h2>{escape(title)}</h2><img alt="{escape(title)}" src="data:image/png;base64,{png}">')
    body.append(f"<h2>Summary</h2><pre>{escape(console_text)}</pre>")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(outcome.spec.label)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _j(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} J"
