"""Heat maps of efficiency profiles."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
import pytest

from routing import Cell, EfficiencyProfile
from routing.heatmap import DPI, INFEASIBLE_COLOUR, figure_size, plot_profile, render_profile

BATCHES = (1, 2, 4, 8)
SEQS = (128, 256, 512, 1024)


def _profile() -> EfficiencyProfile:
    cells = [Cell(b, s, j_per_token=2.0 / b * (1 + s / 1024), throughput_tok_s=100.0 * b,
                  provenance="calibrated", samples=b)
             for b in BATCHES for s in SEQS[:3]]
    cells += [Cell(b, 1024, provenance="calibrated", feasible=False) for b in BATCHES[:2]]
    # (4, 1024) and (8, 1024) have no data
    return EfficiencyProfile("rngd", "rngd", "llama", batch_buckets=BATCHES, seq_buckets=SEQS, cells=cells)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _cell_colours(fig, ax, batch_index: int, seq_index: int) -> Counter:
    """Pixel colours inside one cell (label text and hatching included)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height = rgba.shape[0]
    (x0, y0), (x1, y1) = ax.transData.transform(
        [(seq_index - 0.4, batch_index - 0.4), (seq_index + 0.4, batch_index + 0.4)])
    xs = range(int(min(x0, x1)), int(max(x0, x1)))
    ys = range(int(height - max(y0, y1)), int(height - min(y0, y1)))
    return Counter(tuple(int(v) for v in rgba[y, x, :3]) for y in ys for x in xs)


def test_png_has_the_expected_size(tmp_path):
    profile = _profile()
    path = plot_profile(profile, tmp_path / "rngd.png")
    width, height = _png_size(path.read_bytes())
    w_in, h_in = figure_size(profile)
    assert (width, height) == (round(w_in * DPI), round(h_in * DPI))


def test_infeasible_cells_are_grey_hatched_and_labelled_measured_ones_coloured():
    profile = _profile()
    fig = render_profile(profile, note="emulated pool")
    ax = fig.axes[0]
    infeasible = [p for p in ax.patches if p.get_gid() == "infeasible"]
    measured = [p for p in ax.patches if p.get_gid() == "measured"]
    assert len(infeasible) == 2 and len(measured) == 12
    assert all(p.get_hatch() == "///" for p in infeasible)
    assert sum(t.get_text() == "infeasible" for t in ax.texts) == 2
    assert sum(t.get_text() == "–" for t in ax.texts) == 16  # placeholder under every cell
    title = ax.get_title(loc="left")
    assert "rngd (rngd)" in title and "calibrated 12" in title and "infeasible 2" in title
    assert "emulated pool" in title

    grey = tuple(round(255 * c) for c in INFEASIBLE_COLOUR)
    infeasible_px = _cell_colours(fig, ax, 0, 3).most_common(1)[0][0]
    measured_px = _cell_colours(fig, ax, 0, 0).most_common(1)[0][0]
    missing_px = _cell_colours(fig, ax, 3, 3).most_common(1)[0][0]
    assert max(abs(a - b) for a, b in zip(infeasible_px, grey)) <= 2
    assert missing_px == (255, 255, 255)
    assert measured_px not in (grey, (255, 255, 255))
    # the cheapest cell (batch 8, seq 128) and the dearest (batch 1, seq 512) differ in colour
    assert _cell_colours(fig, ax, 3, 0).most_common(1)[0][0] != _cell_colours(fig, ax, 0, 2).most_common(1)[0][0]


def test_other_metrics_and_empty_profiles_render(tmp_path):
    profile = _profile()
    fig = render_profile(profile, metric="throughput_tok_s")
    assert "output tokens/s" in fig.axes[0].get_title(loc="left")
    empty = EfficiencyProfile("cpu", "cpu", "tiny", batch_buckets=BATCHES, seq_buckets=SEQS)
    plot_profile(empty, tmp_path / "empty.png")
    assert "no measured cells" in render_profile(empty).axes[0].get_title(loc="left")
    with pytest.raises(ValueError, match="unknown metric"):
        render_profile(profile, metric="joules")
