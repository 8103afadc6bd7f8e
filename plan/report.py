"""The plan's HTML report: chosen mix against the alternatives, and where classes go."""

from __future__ import annotations

import html

from plan.verify import Verified


def _row(v: Verified) -> str:
    r = v.result
    jt = f"{r.j_per_token_attributed:.3f}" if r.j_per_token_attributed is not None else "-"
    jtt = f"{r.j_per_token_total:.3f}" if r.j_per_token_total is not None else "-"
    mix = ", ".join(f"{n}× {h}" for h, n in v.plan.replicas.items())
    grown = f" (+{len(v.added)}: {', '.join(v.added)})" if v.added else ""
    return (f"<tr><td>{html.escape(v.plan.label)}</td><td>{html.escape(mix)}{html.escape(grown)}</td>"
            f"<td>{v.plan.cost_per_hour:.2f}</td><td>{v.plan.power_w:.0f}</td><td>{jt}</td><td>{jtt}</td>"
            f"<td>{r.slo_attainment:.1%}</td><td>{'yes' if v.met else 'NO'}</td></tr>")


def render(chosen: Verified, alternatives: list[Verified], objective: str, target: float) -> str:
    rows = "".join(_row(v) for v in [chosen, *alternatives])
    assign = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(', '.join(f'{h} {s:.0%}' for h, s in m.items()))}</td></tr>"
        for k, m in chosen.plan.assignment.items())
    notes = (f"<p>Simulation needed {len(chosen.added)} more replica(s) than the program: "
             f"{html.escape(', '.join(chosen.added))}.</p>" if chosen.added else
             "<p>The program's mix met the target in simulation as planned.</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>hetserve plan</title>
<style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:4px 8px}}table{{border-collapse:collapse}}</style>
</head><body><h1>Fleet plan (objective: {html.escape(objective)}, target {target:.0%})</h1>
<p>Figures are modelled (roofline hardware models), checked by simulation.</p>
<table><tr><th>plan</th><th>mix</th><th>$/h</th><th>peak W (model)</th><th>J/tok attributed (sim)</th>
<th>J/tok total (sim)</th><th>SLO attainment (sim)</th><th>meets target</th></tr>{rows}</table>
{notes}<h2>Where classes go</h2><table><tr><th>class</th><th>hardware share</th></tr>{assign}</table>
</body></html>"""
