"""Overload: offer 10× what a fleet can serve; expect 429s with Retry-After, no 5xx, bounded memory, admitted p99 in SLO.

Two emulated pools (``h100``: 4 at once, ``rngd``: 2 at once, both slowed
3×, so 10× stays a rate one Python client on a shared 2-core machine can
offer) behind one ``hetserve serve`` admitting 8 requests at once. Phase 1 measures what the fleet sustains: a closed loop
of as many clients as the pools' capacity. Phase 2 offers ``--factor`` times
that rate, open loop (Poisson), and nobody retries. Every response is
recorded (status, error code, Retry-After, TTFT, TPOT); the RSS of every
process of the server is sampled all along.

    python bench/overload.py --out bench/results/overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fleet_server  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
POOL = {"engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL], "engine_args": {"time_scale": 3}}
FLEET = {
    "gateway": {"max_ongoing_requests": 8, "poll_interval_s": 0.5},
    "routing": {"policy": "least-load"},
    "pools": [
        {"name": "h100", "hardware": "h100", **POOL, "max_ongoing_requests": 4},
        {"name": "rngd", "hardware": "rngd", **POOL, "max_ongoing_requests": 2},
    ],
}
CAPACITY = 6  # sequences the two pools take at once


async def request(client: httpx.AsyncClient, max_tokens: int) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "overload"}], "max_tokens": max_tokens,
            "stream": True, "ignore_eos": True}
    t0 = time.monotonic()
    out: dict = {"t": t0}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                payload = json.loads(await r.aread())
                out["code"] = payload["error"]["code"]
                out["retry_after"] = r.headers.get("retry-after")
                return out
            first = last = None
            tokens = 0
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    out["stream_error"] = chunk["error"]["code"]
                    continue
                now = time.monotonic()
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    first = first or now
                    last = now
                    tokens += 1
            out["ttft_ms"] = 1e3 * ((first or time.monotonic()) - t0)
            out["e2e_ms"] = 1e3 * (time.monotonic() - t0)
            out["tpot_ms"] = 1e3 * (last - first) / (tokens - 1) if first and tokens > 1 else None
    except httpx.HTTPError as exc:
        out["status"] = "connection"
        out["code"] = repr(exc)[:200]
    return out


async def closed_loop(url: str, clients: int, duration_s: float, max_tokens: int) -> list[dict]:
    results: list[dict] = []
    t_end = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients + 8)) as c:
        async def worker() -> None:
            while time.monotonic() < t_end:
                results.append(await request(c, max_tokens))

        await asyncio.gather(*(worker() for _ in range(clients)))
    return results


async def open_loop(url: str, rate: float, duration_s: float, max_tokens: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t_end = time.monotonic() + duration_s
        next_at = time.monotonic()
        while next_at < t_end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            tasks.append(asyncio.create_task(request(c, max_tokens)))
            next_at += rng.expovariate(rate)
        return list(await asyncio.gather(*tasks))


async def sample_rss(server, every_s: float, out: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append({"t": time.monotonic(), "rss": await asyncio.to_thread(server.rss)})
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def summarize(results: list[dict], duration_s: float, slo_ttft_ms: float, slo_tpot_ms: float) -> dict:
    by_status: dict[str, int] = {}
    for r in results:
        key = f"{r['status']}" + (f" {r['code']}" if r.get("code") and r["status"] != 200 else "")
        by_status[key] = by_status.get(key, 0) + 1
    ok = [r for r in results if r["status"] == 200 and not r.get("stream_error")]
    retry = [int(r["retry_after"]) for r in results if r["status"] == 429 and r.get("retry_after")]
    in_slo = [r for r in ok if r["ttft_ms"] <= slo_ttft_ms and (r["tpot_ms"] is None or r["tpot_ms"] <= slo_tpot_ms)]
    return {
        "requests": len(results), "offered_per_s": round(len(results) / duration_s, 2),
        "admitted_per_s": round(len(ok) / duration_s, 2), "by_status": by_status,
        "server_errors": sum(1 for r in results if r["status"] == "connection" or (isinstance(r["status"], int) and r["status"] >= 500)),
        "stream_errors": sum(1 for r in results if r.get("stream_error")),
        "429_without_retry_after": sum(1 for r in results if r["status"] == 429 and not r.get("retry_after")),
        "retry_after_s": {"min": min(retry), "median": statistics.median(retry), "max": max(retry)} if retry else None,
        "admitted_ttft_ms": {"p50": pct([r["ttft_ms"] for r in ok], 0.5), "p99": pct([r["ttft_ms"] for r in ok], 0.99)},
        "admitted_tpot_ms": {"p50": pct([r["tpot_ms"] for r in ok], 0.5), "p99": pct([r["tpot_ms"] for r in ok], 0.99)},
        "admitted_e2e_ms": {"p50": pct([r["e2e_ms"] for r in ok], 0.5), "p99": pct([r["e2e_ms"] for r in ok], 0.99)},
        "admitted_within_slo": round(len(in_slo) / len(ok), 4) if ok else None,
    }


def memory(samples: list[dict], t_split: float) -> dict:
    """Per process: RSS at the end of phase 1, and the most during overload (MiB)."""
    before = [s for s in samples if s["t"] <= t_split]
    during = [s for s in samples if s["t"] > t_split]
    if not before or not during:
        return {}
    base = before[-1]["rss"]
    out = {}
    for key, rss in base.items():
        peak = max(s["rss"].get(key, 0) for s in during)
        out[key] = {"before_mib": round(rss / 2**20, 1), "peak_mib": round(peak / 2**20, 1),
                    "growth_pct": round(100 * (peak / rss - 1), 1)}
    total_before = sum(base.values())
    total_peak = max(sum(s["rss"].values()) for s in during)
    out["ALL"] = {"before_mib": round(total_before / 2**20, 1), "peak_mib": round(total_peak / 2**20, 1),
                  "growth_pct": round(100 * (total_peak / total_before - 1), 1)}
    return out


async def main_async(args) -> dict:
    server = _fleet_server.start(FLEET, Path(args.log_dir), probe_model=MODEL)
    samples: list = []
    stop = asyncio.Event()
    try:
        sampler = asyncio.create_task(sample_rss(server, 2.0, samples, stop))
        base = await closed_loop(server.url, CAPACITY, args.capacity_s, args.max_tokens)
        ok = [r for r in base if r["status"] == 200]
        sustained = len(ok) / args.capacity_s
        t_split = time.monotonic()
        rate = args.factor * sustained
        over = await open_loop(server.url, rate, args.overload_s, args.max_tokens, args.seed)
        stop.set()
        await sampler
    finally:
        stopped = server.stop()
    return {
        "command": "python " + " ".join(sys.argv), "fleet": FLEET, "factor": args.factor, "max_tokens": args.max_tokens,
        "slo": {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms},
        "capacity_phase": {"clients": CAPACITY, "sustained_per_s": round(sustained, 2),
                           **summarize(base, args.capacity_s, args.slo_ttft_ms, args.slo_tpot_ms)},
        "overload_phase": {"target_per_s": round(rate, 2),
                           **summarize(over, args.overload_s, args.slo_ttft_ms, args.slo_tpot_ms)},
        "memory": memory(samples, t_split), "stop": stopped,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--capacity-s", type=float, default=20.0)
    ap.add_argument("--overload-s", type=float, default=60.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--slo-ttft-ms", type=float, default=1000.0)
    ap.add_argument("--slo-tpot-ms", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench/results/overload.json")
    ap.add_argument("--log-dir", default="overload-logs")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("capacity_phase", "overload_phase", "stop")}, indent=1))
    print("memory (MiB):", json.dumps(result["memory"].get("ALL")))
    over = result["overload_phase"]
    return 0 if over["server_errors"] == 0 and over["429_without_retry_after"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
