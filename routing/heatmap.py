"""Heat maps of an efficiency profile: one PNG per pool.

Rows are the profile's batch buckets (batch 1 at the top), columns its
sequence-length buckets (prompt + output tokens). Each measured cell is
coloured by the metric (a log scale when the values span more than a factor
of ten, as joules per token do between batch 1 and batch 64) and labelled with
its value. Infeasible cells (``feasible: false``: the pool refused the
length) are grey, hatched and labelled ``infeasible``; cells with no data are
white and labelled ``–``. The title names the pool, its hardware, the model
and where the figures came from (provenance counts).

Draws on matplotlib's Agg canvas directly (no pyplot, no display, no global
backend change); no Ray, no gateway.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from routing.profile import METRICS, EfficiencyProfile

#: Axis label and value format per metric.
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "j_per_token": ("J per output token (above idle)", "{:.3g}"),
    "throughput_tok_s": ("output tokens/s", "{:.0f}"),
    "ttft_ms": ("TTFT, ms", "{:.0f}"),
    "tpot_ms": ("TPOT, ms", "{:.1f}"),
    "watts": ("mean power, W", "{:.0f}"),
    "cost_per_mtok": ("cost per million output tokens", "{:.3g}"),
}
#: Metrics where a larger value is better (colour map reversed so "good" is the same colour).
HIGHER_IS_BETTER = {"throughput_tok_s"}

INFEASIBLE_COLOUR = (0.62, 0.62, 0.62)
MISSING_COLOUR = (1.0, 1.0, 1.0)
DPI = 100


def figure_size(profile: EfficiencyProfile) -> tuple[float, float]:
    """Figure size in inches; the PNG is ``DPI`` times this, in pixels."""
    return 3.0 + 1.05 * len(profile.seq_buckets), 2.2 + 0.5 * len(profile.batch_buckets)


def render_profile(profile: EfficiencyProfile, metric: str = "j_per_token", note: str | None = None) -> Figure:
    """Draw the heat map and return the figure (not attached to pyplot's state)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    label, fmt = METRIC_LABELS[metric]
    batches, seqs = profile.batch_buckets, profile.seq_buckets
    fig = Figure(figsize=figure_size(profile), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    cells = list(profile.cells())
    values = [getattr(c, metric) for c in cells if c.feasible and getattr(c, metric) is not None]
    norm = _norm(values)
    cmap = matplotlib.colormaps["viridis" if metric in HIGHER_IS_BETTER else "viridis_r"]

    ax.set_xlim(-0.5, len(seqs) - 0.5)
    ax.set_ylim(len(batches) - 0.5, -0.5)  # batch 1 at the top
    for bi in range(len(batches)):
        for si in range(len(seqs)):
            ax.add_patch(Rectangle((si - 0.5, bi - 0.5), 1, 1, facecolor=MISSING_COLOUR,
                                   edgecolor=(0.85, 0.85, 0.85), linewidth=0.5))
            ax.text(si, bi, "–", ha="center", va="center", fontsize=8, color=(0.6, 0.6, 0.6))
    for cell in cells:
        bi, si = batches.index(cell.batch), seqs.index(cell.seq_len)
        value = getattr(cell, metric)
        if not cell.feasible:
            ax.add_patch(Rectangle((si - 0.5, bi - 0.5), 1, 1, facecolor=INFEASIBLE_COLOUR,
                                   hatch="///", edgecolor="white", linewidth=0.0, gid="infeasible"))
            ax.text(si, bi, "infeasible", ha="center", va="center", fontsize=7, color="black",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor=INFEASIBLE_COLOUR, edgecolor="none"))
        elif value is not None and norm is not None:
            rgba = cmap(norm(value))
            ax.add_patch(Rectangle((si - 0.5, bi - 0.5), 1, 1, facecolor=rgba, edgecolor="white",
                                   linewidth=0.5, gid="measured"))
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(si, bi, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")

    ax.set_xticks(range(len(seqs)), [str(s) for s in seqs], rotation=0, fontsize=8)
    ax.set_yticks(range(len(batches)), [str(b) for b in batches], fontsize=8)
    ax.set_xlabel("sequence length bucket (prompt + output tokens)")
    ax.set_ylabel("batch size bucket (concurrent sequences)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    counts = Counter(c.provenance for c in cells if c.feasible)
    provenance = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "no measured cells"
    infeasible = sum(1 for c in cells if not c.feasible)
    lines = [
        f"{profile.pool} ({profile.hardware}): {label}",
        f"model {profile.model}; cells: {provenance}"
        + (f", infeasible {infeasible}" if infeasible else ""),
    ]
    if note:
        lines.append(note)
    ax.set_title("\n".join(lines), fontsize=9, loc="left")
    if norm is not None:
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=ax, label=label, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return fig


def plot_profile(
    profile: EfficiencyProfile,
    path: str | Path,
    metric: str = "j_per_token",
    note: str | None = None,
) -> Path:
    """Write the heat map of ``metric`` as a PNG at ``path``; returns the path.

    ``note`` is an extra title line (e.g. ``"emulated pool: modelled figures"``).
    """
    path = Path(path)
    fig = render_profile(profile, metric, note)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _norm(values: list[float]) -> Normalize | None:
    if not values:
        return None
    lo, hi = min(values), max(values)
    if lo > 0 and hi / lo > 10:
        return LogNorm(lo, hi)
    if math.isclose(lo, hi):
        pad = abs(lo) * 0.05 or 1.0
        return Normalize(lo - pad, hi + pad)
    return Normalize(lo, hi)
