"""What a sweep prints (summary, per-cell rows) and writes (profile JSON, heat map)."""

from __future__ import annotations

import statistics
from pathlib import Path

from calibration.profile import build_profile
from calibration.sweep import ERROR, INFEASIBLE, OK, SKIPPED, PoolSweep

_MARK = {INFEASIBLE: "x", SKIPPED: ".", ERROR: "!"}


def summary(sweep: PoolSweep) -> str:
    """A short table: J/token per batch × sequence length, counts, and the model comparison."""
    p = sweep.pool
    counts = {s: sum(1 for c in sweep.cells if c.status == s) for s in (OK, INFEASIBLE, SKIPPED, ERROR)}
    kind = f"{p.hardware}, {'emulated' if p.emulated else p.engine}"
    lines = [
        f"{p.name} ({kind}) model {sweep.model}, {sweep.output_tokens} output tokens: "
        f"{counts[OK]} cells measured, {counts[INFEASIBLE]} infeasible, {counts[SKIPPED]} skipped, "
        f"{counts[ERROR]} failed in {sweep.elapsed_s:.1f} s",
    ]
    seqs = sorted({c.seq_len for c in sweep.cells})
    width = max(9, *(len(str(s)) + 1 for s in seqs)) if seqs else 9
    lines.append("J/token" + " " * 3 + "".join(f"{s:>{width}}" for s in seqs) + "   (seq = prompt + output)")
    for b in sweep.batch_sizes:
        row = f"batch {b:<4}"
        for s in seqs:
            c = next((c for c in sweep.cells if c.batch == b and c.seq_len == s), None)
            if c is None:
                text = ""
            elif c.status == OK:
                text = "?" if c.j_per_token is None else f"{c.j_per_token:.3g}"[: width - 1]
            else:
                text = _MARK[c.status]
            row += f"{text:>{width}}"
        lines.append(row)
    lines.append("x infeasible, . skipped (too slow for --max-cell-s or the time budget), ! failed, ? no energy")
    ok = [c for c in sweep.cells if c.status == OK]
    if ok:
        best = max(ok, key=lambda c: c.throughput_tok_s or 0)
        lines.append(f"peak {best.throughput_tok_s:.0f} tok/s at batch {best.batch} × seq {best.seq_len}; "
                     f"TTFT {min(c.ttft_ms for c in ok):.0f}-{max(c.ttft_ms for c in ok):.0f} ms")
    ratios = {m: [r for c in ok if (r := c.ratio(m)) is not None] for m in ("throughput_tok_s", "j_per_token")}
    if any(ratios.values()):
        parts = [
            f"{label} {statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
            for label, v in (("throughput", ratios["throughput_tok_s"]), ("J/token", ratios["j_per_token"])) if v
        ]
        lines.append(f"calibrated / hardware model, median [range] over {max(map(len, ratios.values()))} cells: "
                     + ", ".join(parts))
    for failed in (c for c in sweep.cells if c.status == ERROR):
        lines.append(f"failed: batch {failed.batch} × prompt {failed.prompt_tokens}: {failed.reason}")
    return "\n".join(lines)


def cell_rows(sweep: PoolSweep) -> str:
    """Every point of a sweep, one line each (``--verbose``)."""
    head = (f"{'batch':>5} {'prompt':>6} {'seq':>6} {'status':>10} {'tok/s':>8} {'ttft_ms':>8} {'tpot_ms':>8} "
            f"{'W':>7} {'J/tok':>7} {'$/Mtok':>7} {'thr/model':>9} {'J/model':>8}")
    rows = [head]

    def f(v, spec):
        return format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0])

    for c in sweep.cells:
        rows.append(
            f"{c.batch:>5} {c.prompt_tokens:>6} {c.seq_len:>6} {c.status:>10} {f(c.throughput_tok_s, '8.0f')} "
            f"{f(c.ttft_ms, '8.1f')} {f(c.tpot_ms, '8.2f')} {f(c.watts, '7.1f')} {f(c.j_per_token, '7.3g')} "
            f"{f(c.cost_per_mtok, '7.3g')} {f(c.ratio('throughput_tok_s'), '9.2f')} {f(c.ratio('j_per_token'), '8.2f')}"
            + (f"  {c.reason}" if c.reason and c.status != OK else "")
        )
    return "\n".join(rows)


def write_outputs(sweep: PoolSweep, out_dir: str | Path, metric: str = "j_per_token") -> tuple[Path, Path]:
    """``<out>/<pool>.json`` (the profile) and ``<out>/<pool>.png`` (its heat map)."""
    from routing.heatmap import plot_profile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile = build_profile(sweep)
    json_path, png_path = out / f"{sweep.pool.name}.json", out / f"{sweep.pool.name}.png"
    profile.save(json_path)
    note = (f"calibrated through the gateway, {sweep.output_tokens} output tokens per sequence"
            + ("; EMULATED pool: energy and speed come from the hardware model" if sweep.pool.emulated else ""))
    plot_profile(profile, png_path, metric=metric, note=note)
    return json_path, png_path
