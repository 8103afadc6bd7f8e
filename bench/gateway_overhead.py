"""Gateway overhead: what hetserve adds to one pool's engine, tiny requests.

Run: .venv/bin/python bench/gateway_overhead.py [--quick] [--profile] [--with-vllm]

The same engine (the tiny Llama through hetserve's ``VLLMEngine`` adapter,
engine settings as in ``bench/_servers.py``) is called three ways, one after
another, each with the same tiny requests (unary ``max_tokens=1``; streaming
``max_tokens=4``, timed to the first token and to the end), sequentially and
at concurrency 8:

- ``engine``: the adapter in this process, no HTTP (``VLLMEngine.generate``);
- ``plain``: a minimal FastAPI/uvicorn app calling the adapter in-process,
  over HTTP, no Ray (``bench/_servers.py serve plain``);
- ``hetserve``: the full gateway through Ray Serve (proxy → gateway ingress →
  pool replica), fleet ``bench/fleets/cpu-vllm.yaml``;
- ``vllm`` (``--with-vllm``): vLLM's own OpenAI server, for reference.

The table gives latency p50/p99, requests/s, and what each way adds to the
engine alone and to the plain HTTP app (the Ray + hetserve share). Target:
hetserve adds under 5 ms at the median. ``--profile`` samples hetserve's
proxy, gateway and pool replica processes with py-spy (when installed)
during a sequential run and prints where their CPU time goes.
Results: ``bench/results/gateway_overhead[-quick].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _load  # noqa: E402
import _servers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
UNARY_TOKENS = 1
STREAM_TOKENS = 4
TARGET_MS = 5.0


def _stats(values_ms: list[float]) -> dict:
    return {"p50": float(np.percentile(values_ms, 50)), "p99": float(np.percentile(values_ms, 99)), "n": len(values_ms)}


# -- (a) the adapter in-process -------------------------------------------------


async def _engine_runs(n_seq: int, n_conc: int, concurrency: int) -> dict:
    from workers.engine import EngineRequest, SamplingParams
    from workers.vllm_engine import VLLMEngine

    engine = VLLMEngine(_servers.model_dir(), **_servers.ENGINE)
    await engine.start()
    counter = iter(range(10**7))

    async def one(max_tokens: int) -> tuple[float, float]:
        i = next(counter)
        req = EngineRequest(f"bench-{i}", prompt=_load.prompt_for(i),
                            params=SamplingParams(max_tokens=max_tokens, ignore_eos=True))
        t0 = time.perf_counter()
        first = None
        async for _ in engine.generate(req):
            if first is None:
                first = time.perf_counter() - t0
        return first * 1e3, (time.perf_counter() - t0) * 1e3

    async def run(mode: str, n: int, conc: int) -> dict:
        tokens = UNARY_TOKENS if mode == "unary" else STREAM_TOKENS
        out: list[tuple[float, float]] = []
        todo = iter(range(n))

        async def worker():
            for _ in todo:
                out.append(await one(tokens))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
        return _row(mode, conc, [o[0] for o in out], [o[1] for o in out], n / wall)

    try:
        for _ in range(20):  # warm-up
            await one(STREAM_TOKENS)
        rows = []
        for mode in ("unary", "stream"):
            rows.append(await run(mode, n_seq, 1))
            rows.append(await run(mode, n_conc, concurrency))
        return {"label": "engine", "rows": rows}
    finally:
        await engine.shutdown()


def _row(mode: str, conc: int, ttft_ms: list[float], e2e_ms: list[float], req_s: float, errors: int = 0) -> dict:
    row = {"mode": mode, "concurrency": conc, "req_s": req_s, "errors": errors, "e2e_ms": _stats(e2e_ms)}
    if mode == "stream":
        row["ttft_ms"] = _stats(ttft_ms)
    return row


# -- (b), (c), (d): over HTTP ----------------------------------------------------


def _http_runs(url: str, label: str, n_seq: int, n_conc: int, concurrency: int) -> dict:
    asyncio.run(_load.closed_loop(url, concurrency=1, requests=20, max_tokens=STREAM_TOKENS, stream=True, first_index=10**6))
    rows = []
    index = 0
    for mode in ("unary", "stream"):
        for conc, n in ((1, n_seq), (concurrency, n_conc)):
            tokens = UNARY_TOKENS if mode == "unary" else STREAM_TOKENS
            samples, wall = asyncio.run(_load.closed_loop(url, concurrency=conc, requests=n, max_tokens=tokens,
                                                          stream=mode == "stream", first_index=index))
            index += n
            ok = [s for s in samples if s.ok]
            rows.append(_row(mode, conc, [s.ttft_s * 1e3 for s in ok], [s.e2e_s * 1e3 for s in ok],
                             len(ok) / wall, len(samples) - len(ok)))
    return {"label": label, "rows": rows}


# -- profiling -------------------------------------------------------------------


def _profile(server: _servers.Server, seconds: float, n_requests: int) -> dict:
    """py-spy the proxy, gateway and pool replica while sequential unary requests run."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed"}
    pids = server.pids()
    targets = {role: pids[role][0] for role in ("proxy", "ingress", "llm_replica") if pids.get(role)}
    tmp = Path(tempfile.mkdtemp(prefix="hetserve-pyspy-"))
    procs = {
        role: subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                                "--format", "raw", "--output", str(tmp / f"{role}.txt"), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for role, pid in targets.items()
    }
    time.sleep(1.0)
    deadline = time.monotonic() + seconds - 1.5
    index = 5 * 10**6
    while time.monotonic() < deadline:
        asyncio.run(_load.closed_loop(server.url, concurrency=1, requests=n_requests, max_tokens=UNARY_TOKENS,
                                      stream=False, first_index=index))
        index += n_requests
    out = {}
    for role, p in procs.items():
        try:
            p.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            p.kill()
        out[role] = _summarize_raw(tmp / f"{role}.txt")
    return out


def _summarize_raw(path: Path, top: int = 12) -> dict:
    """Collapsed stacks → the functions with the most samples (inclusive), idle frames left out."""
    if not path.exists():
        return {"error": "no samples"}
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = stack.split(";")
        leaf = frames[-1] if frames else ""
        if any(idle in leaf for idle in ("select (", "epoll", "poll (", "wait (", "_wait_for_tstate_lock", "sleep")):
            continue
        total += n
        for f in set(fr.split(" (")[0] + " (" + fr.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                     if " (" in fr else fr for fr in frames):
            inclusive[f] += n
    return {"busy_samples": total,
            "top_inclusive": [(f, round(n / total, 3)) for f, n in inclusive.most_common(top)] if total else []}


# -- report ----------------------------------------------------------------------


def table(results: list[dict]) -> str:
    base = {(r["mode"], r["concurrency"]): r for r in results[0]["rows"]}
    plain = next((x for x in results if x["label"] == "plain"), None)
    plain_rows = {(r["mode"], r["concurrency"]): r for r in plain["rows"]} if plain else {}
    lines = ["| request | way | p50 ms | p99 ms | req/s | + vs engine p50 ms | + vs plain p50 ms | p50 / engine | err |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = [(m, c, k) for m in ("unary", "stream") for c in sorted({r["concurrency"] for r in results[0]["rows"]})
            for k in (("e2e_ms",) if m == "unary" else ("ttft_ms", "e2e_ms"))]
    for mode, conc, key in keys:
        what = f"{mode} c={conc} " + ("(max_tokens 1)" if mode == "unary" else f"{'TTFT' if key == 'ttft_ms' else 'e2e'} (4 tok)")
        for res in results:
            row = next((r for r in res["rows"] if r["mode"] == mode and r["concurrency"] == conc), None)
            if row is None or key not in row:
                continue
            b = base[(mode, conc)][key]["p50"]
            p = plain_rows.get((mode, conc), {}).get(key, {}).get("p50")
            v = row[key]
            vs_plain = "" if p is None or res["label"] in ("engine", "plain") else f"{v['p50'] - p:+.2f}"
            lines.append(
                f"| {what} | {res['label']} | {v['p50']:.2f} | {v['p99']:.2f} | {row['req_s']:.1f} | "
                f"{v['p50'] - b:+.2f} | {vs_plain} | {v['p50'] / b:.2f}x | {row['errors']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy hetserve's Ray processes (sequential unary)")
    parser.add_argument("--with-vllm", action="store_true", help="also vLLM's own OpenAI server")
    parser.add_argument("--ways", default="engine,plain,hetserve", help="comma-separated subset of engine,plain,hetserve")
    parser.add_argument("--fleet", type=Path, help="hetserve's fleet file (default: bench/fleets/cpu-vllm.yaml)")
    parser.add_argument("--throughput-optimized", action="store_true",
                        help="start hetserve's Ray with RAY_SERVE_THROUGHPUT_OPTIMIZED=1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n_seq, n_conc, conc = (20, 40, 8) if args.quick else (200, 400, 8)
    log_dir = Path(tempfile.mkdtemp(prefix="hetserve-bench-"))
    _servers.model_dir()
    os.environ.update(_servers.ENGINE_ENV)  # the in-process engine

    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if "engine" not in ways or "hetserve" not in ways:
        raise SystemExit("--ways needs at least engine and hetserve")
    results = []
    print("== engine (in-process adapter)", flush=True)
    results.append(asyncio.run(_engine_runs(n_seq, n_conc, conc)))
    profile = None
    kinds = [k for k in ("plain", "hetserve") if k in ways] + (["vllm"] if args.with_vllm else [])
    for kind in kinds:
        print(f"== {kind}", flush=True)
        options = {"fleet": str(args.fleet.resolve())} if kind == "hetserve" and args.fleet else {}
        env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"} if kind == "hetserve" and args.throughput_optimized else None
        server = _servers.start_server(kind, log_dir=log_dir, env=env, **options)
        try:
            results.append(_http_runs(server.url, kind, n_seq, n_conc, conc))
            if kind == "hetserve" and args.profile:
                print("   profiling with py-spy", flush=True)
                profile = _profile(server, 12.0, 50)
        finally:
            server.stop()

    text = table(results)
    het = next(r for r in results if r["label"] == "hetserve")
    seq_unary = next(r for r in het["rows"] if r["mode"] == "unary" and r["concurrency"] == 1)
    added = seq_unary["e2e_ms"]["p50"] - results[0]["rows"][0]["e2e_ms"]["p50"]
    name = "gateway_overhead" + ("-quick" if args.quick else "")
    out_path = args.out or RESULTS / f"{name}.json"
    _load.write_result(out_path, name, "gateway_overhead.py", argv, _load.machine(),
                       engine={**_servers.ENGINE, **_servers.ENGINE_ENV},
                       fleet=args.fleet.name if args.fleet else "cpu-vllm.yaml", target_added_p50_ms=TARGET_MS,
                       added_p50_ms_sequential_unary=added, results=results, profile=profile)
    print()
    print(text)
    verdict = "meets" if added < TARGET_MS else "MISSES"
    print(f"\nhetserve adds {added:.2f} ms at the median (sequential, max_tokens 1): {verdict} the {TARGET_MS:g} ms target")
    if profile:
        print("\nwhere hetserve's Ray processes spend their busy time (py-spy, inclusive share of busy samples):")
        for role, p in profile.items():
            print(f"  {role}: {p.get('busy_samples', 0)} busy samples")
            for f, share in p.get("top_inclusive", []):
                print(f"    {share:6.1%}  {f}")
    print(f"\nresults: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
