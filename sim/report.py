"""The comparison table (text) and the HTML report with embedded PNG plots."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.oracle import OracleBound  # noqa: E402
from sim.results import RunResult  # noqa: E402

_COLUMNS = ("policy", "done", "429", "400", "J/tok attr", "J/tok total", "× oracle", "× capped", "$/Mtok",
            "TTFT p50/p99 ms", "TPOT p50 ms", "E2E p50 s", "SLO %", "goodput/s")


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def rows(results: list[RunResult]) -> list[tuple[str, ...]]:
    return [(
        r.label, str(r.completed), str(r.rejected["saturated"]), str(r.rejected["infeasible"]),
        _f(r.j_per_token_attributed, ".3f"), _f(r.j_per_token_total, ".3f"),
        _f(r.oracle_ratio, ".2f"), _f(r.oracle_ratio_capped, ".2f"), _f(r.usd_per_mtok, ".3f"),
        f"{_f(r.ttft_ms.p50, '.0f')}/{_f(r.ttft_ms.p99, '.0f')}", _f(r.tpot_ms.p50, ".1f"),
        _f(r.e2e_ms.p50 and r.e2e_ms.p50 / 1e3, ".2f"), f"{100 * r.slo_attainment:.1f}",
        f"{r.goodput_rps:.2f}",
    ) for r in results]


def table(results: list[RunResult], oracle: OracleBound | None = None,
          capped: OracleBound | None = None) -> str:
    """A fixed-width comparison table, one line per run, the oracle (and its capped estimate) last."""
    body = [_COLUMNS, *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + oracle_lines(oracle, capped))


def oracle_lines(oracle: OracleBound | None, capped: OracleBound | None = None) -> list[str]:
    """The bound and the capped estimate, one line each (docs/simulator.md, "The oracle")."""
    lines = []
    if oracle is not None:
        lines.append(f"oracle bound: {_f(oracle.j_per_token_attributed, '.3f')} J/tok attributed, "
                     f"{_f(oracle.j_per_token_total, '.3f')} with idle "
                     f"({oracle.classes} classes × {oracle.windows} windows of {oracle.window_s:.1f} s, "
                     f"{100 * oracle.served_share:.1f} % of tokens servable)")
    if capped is not None:
        lines.append(f"capped oracle (batches no larger than the sequences that can be in the system; an estimate): "
                     f"{_f(capped.j_per_token_attributed, '.3f')} J/tok attributed")
    return lines


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(results: list[RunResult], oracle: OracleBound | None,
           capped: OracleBound | None) -> list[tuple[str, str]]:
    labels = [r.label for r in results]
    x = range(len(results))
    out = []

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar([i - 0.2 for i in x], [r.j_per_token_attributed or 0 for r in results], 0.4, label="attributed")
    ax.bar([i + 0.2 for i in x], [r.j_per_token_total or 0 for r in results], 0.4, label="total (with idle)")
    if oracle and oracle.j_per_token_attributed:
        ax.axhline(oracle.j_per_token_attributed, color="k", ls="--", lw=1, label="oracle bound (attributed)")
    if capped and capped.j_per_token_attributed:
        ax.axhline(capped.j_per_token_attributed, color="k", ls=":", lw=1, label="capped oracle (attributed)")
    ax.set_xticks(list(x), labels, rotation=20)
    ax.set_ylabel("J per output token")
    ax.legend(fontsize=8)
    out.append(("Energy per output token", _png(fig)))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, name in zip(axes, ("ttft_ms", "tpot_ms")):
        for k, (q, off) in enumerate((("p50", -0.25), ("p90", 0), ("p99", 0.25))):
            ax.bar([i + off for i in x], [getattr(getattr(r, name), q) or 0 for r in results], 0.25, label=q)
        ax.set_xticks(list(x), labels, rotation=20)
        ax.set_ylabel(name.replace("_", " "))
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    out.append(("Latency percentiles", _png(fig)))

    pools = list(dict.fromkeys(p.name for r in results for p in r.pools))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, attr, unit in ((axes[0], "share", "share of routed requests"),
                           (axes[1], "energy_total_j", "energy incl. idle (kJ)")):
        bottom = [0.0] * len(results)
        for name in pools:
            vals = [next((getattr(p, attr) for p in r.pools if p.name == name), 0.0) for r in results]
            vals = [v / 1e3 for v in vals] if attr == "energy_total_j" else vals
            ax.bar(list(x), vals, 0.6, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(list(x), labels, rotation=20)
        ax.set_ylabel(unit)
    axes[0].legend(fontsize=8)
    out.append(("Pools: request share and energy", _png(fig)))
    return out


def html_report(results: list[RunResult], oracle: OracleBound | None, title: str,
                notes: list[str] = (), capped: OracleBound | None = None) -> str:
    """A self-contained HTML page: the table, per-pool figures, plots."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows(results))
    pool_rows = "".join(
        f"<tr><td>{esc(r.label)}</td><td>{esc(p.name)}</td><td>{esc(p.hardware)}</td><td>{p.requests}</td>"
        f"<td>{100 * p.share:.1f}</td><td>{p.mean_load:.1f}</td><td>{100 * p.busy_share:.1f}</td>"
        f"<td>{p.energy_attributed_j / 1e3:.1f}</td><td>{p.energy_total_j / 1e3:.1f}</td><td>{p.cost_usd:.3f}</td></tr>"
        for r in results for p in r.pools)
    plots = "".join(f"<h2>{esc(t)}</h2><img src='data:image/png;base64,{png}'>" for t, png in _plots(results, oracle, capped))
    oracle_line = "".join(f"<pre>{esc(line)}</pre>" for line in oracle_lines(oracle, capped))
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>{esc(title)}</h1><ul>{note_html}</ul>
<table><tr>{head}</tr>{body}</table>{oracle_line}
<h2>Pools</h2><table><tr><th>policy</th><th>pool</th><th>hardware</th><th>requests</th><th>share %</th>
<th>mean load</th><th>busy %</th><th>attributed kJ</th><th>total kJ</th><th>cost $</th></tr>{pool_rows}</table>
{plots}</body></html>
"""
