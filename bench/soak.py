"""Soak: hours of mixed traffic against one ``hetserve serve``; lose nothing, grow no memory.

Open-loop Poisson arrivals of a mix: streamed and whole chat/text completions
on the emulated pools and the real CPU vLLM pool, ``n=2``, clients that hang
up after the first chunk, and bad inputs (malformed or deeply nested JSON, an
oversized body, an unknown model, out-of-range values, a refused parameter).
Every request is classified:

- ``ok``: 200 with a whole answer (a stream: a finish reason and ``[DONE]``);
- ``refused``: the 4xx the bad input deserves (wrong status = lost);
- ``shed``: 429 with ``Retry-After`` (an answer, counted apart);
- ``hung_up``: the client disconnected on purpose;
- ``lost``: anything else (5xx, a connection error, a timeout, a cut stream).

The RSS of every process of the server (supervisor, server, Ray's, the
gateway and pool replicas, vLLM's EngineCore) is sampled every
``--sample-s``. Growth per process = median RSS over the last
``--window-s`` / median over the first ``--window-s`` after warm-up, minus 1.
At the end every pool must show 0 sequences in flight, then the server is
stopped with a SIGTERM to its process group.

    python bench/soak.py --duration-s 1800 --out bench/results/soak.json     # the 30-minute run
    python bench/soak.py --duration-s 240 --warmup-s 60 --window-s 45        # a short one
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

EMULATED = "meta-llama/Llama-3.1-8B-Instruct"
REAL = "tiny-llama"
MSG = [{"role": "user", "content": "Tell me about soak tests."}]

#: (kind, weight): the traffic mix.
MIX = [
    ("chat_stream", 35), ("text_whole", 15), ("real_whole", 8), ("real_stream", 5), ("n2_whole", 5),
    ("hang_up", 12), ("bad", 20),
]

BAD = [  # (name, path, body bytes, expected status)
    ("malformed json", "/v1/chat/completions", b"{not json", 400),
    ("nested 5000 deep", "/v1/chat/completions", b'{"model": "x", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    ("unknown model", "/v1/chat/completions", json.dumps({"model": "gpt-9", "messages": MSG}).encode(), 404),
    ("negative max_tokens", "/v1/completions", json.dumps({"model": EMULATED, "prompt": "x", "max_tokens": -1}).encode(), 400),
    ("temperature 3", "/v1/chat/completions", json.dumps({"model": EMULATED, "messages": MSG, "temperature": 3}).encode(), 400),
    ("tools (no parser)", "/v1/chat/completions", json.dumps({"model": EMULATED, "messages": MSG, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {}}}]}).encode(), 400),
    ("5 MiB body", "/v1/completions", json.dumps({"model": EMULATED, "prompt": "x" * (5 << 20)}).encode(), 413),
    ("too long", "/v1/completions", json.dumps({"model": REAL, "prompt": "word " * 3000, "max_tokens": 8}).encode(), 400),
]


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lost: list[str] = []
        self.by_kind: dict[str, dict[str, int]] = {}

    def add(self, kind: str, outcome: str, why: str = "") -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        k = self.by_kind.setdefault(kind, {})
        k[outcome] = k.get(outcome, 0) + 1
        if outcome == "lost" and len(self.lost) < 50:
            self.lost.append(f"{kind}: {why}")


async def _stream(client: httpx.AsyncClient, path: str, body: dict, hang_up: bool) -> tuple[str, str]:
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return _status_outcome(r.status_code, r.headers), f"{r.status_code} {r.text[:200]}"
        finish, done = None, False
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if hang_up:
                return "hung_up", ""
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return "lost", f"error event {chunk['error']}"
            for c in chunk.get("choices", []):
                finish = c.get("finish_reason") or finish
        return ("ok", "") if done and finish else ("lost", f"stream ended: finish={finish} done={done}")


def _status_outcome(status: int, headers) -> str:
    if status == 429 and headers.get("retry-after"):
        return "shed"
    return "lost"


async def one(client: httpx.AsyncClient, kind: str, rng: random.Random, tally: Tally) -> None:
    tokens = rng.randint(16, 96)
    try:
        if kind in ("chat_stream", "hang_up"):
            body = {"model": EMULATED, "messages": MSG, "max_tokens": tokens, "stream": True}
            outcome, why = await _stream(client, "/v1/chat/completions", body, hang_up=kind == "hang_up")
        elif kind == "real_stream":
            body = {"model": REAL, "prompt": "soak", "max_tokens": 16, "stream": True}
            outcome, why = await _stream(client, "/v1/completions", body, hang_up=False)
        elif kind == "bad":
            name, path, raw, expected = rng.choice(BAD)
            r = await client.post(path, content=raw, headers={"content-type": "application/json"})
            ok = r.status_code == expected and set(r.json().get("error", {})) == {"message", "type", "param", "code"}
            outcome, why = ("refused", "") if ok else ("lost", f"{name}: {r.status_code} {r.text[:200]}")
            kind = f"bad: {name}"
        else:
            model, n, max_tokens = {
                "text_whole": (EMULATED, 1, tokens), "real_whole": (REAL, 1, 16), "n2_whole": (EMULATED, 2, tokens),
            }[kind]
            r = await client.post("/v1/completions", json={"model": model, "prompt": "soak", "max_tokens": max_tokens, "n": n})
            if r.status_code == 200:
                choices = r.json()["choices"]
                good = len(choices) == n and all(c["finish_reason"] for c in choices)
                outcome, why = ("ok", "") if good else ("lost", "incomplete body")
            else:
                outcome, why = _status_outcome(r.status_code, r.headers), f"{r.status_code} {r.text[:200]}"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        outcome, why = "lost", repr(exc)
    tally.add(kind, outcome, why)


async def drive(url: str, duration_s: float, rate: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = set()
        t_end = time.monotonic() + duration_s
        next_at = time.monotonic()
        while next_at < t_end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            task = asyncio.create_task(one(client, rng.choices(kinds, weights)[0], rng, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += rng.expovariate(rate)
        if tasks:
            await asyncio.gather(*tasks)


async def sample(server: _fleet_server.FleetServer, every_s: float, samples: list, stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        rss = await asyncio.to_thread(server.rss)
        samples.append({"t": round(time.monotonic() - t0, 1), "rss": rss})
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def growth(samples: list, warmup_s: float, window_s: float) -> dict:
    """Per process and in all: median RSS of the last window over the first window after warm-up."""
    end = samples[-1]["t"]
    first = [s for s in samples if warmup_s <= s["t"] < warmup_s + window_s]
    last = [s for s in samples if s["t"] >= end - window_s]
    if not first or not last or first[-1]["t"] >= last[0]["t"]:
        return {"error": "run too short for the warm-up and windows given"}
    keys = set(first[0]["rss"]) & set(last[-1]["rss"])
    out = {}
    for key in sorted(keys):
        a = statistics.median(s["rss"][key] for s in first if key in s["rss"])
        b = statistics.median(s["rss"][key] for s in last if key in s["rss"])
        out[key] = {"first_mib": round(a / 2**20, 1), "last_mib": round(b / 2**20, 1), "growth_pct": round(100 * (b / a - 1), 2)}
    a = statistics.median(sum(s["rss"].values()) for s in first)
    b = statistics.median(sum(s["rss"].values()) for s in last)
    out["ALL"] = {"first_mib": round(a / 2**20, 1), "last_mib": round(b / 2**20, 1), "growth_pct": round(100 * (b / a - 1), 2)}
    gone = sorted(set(first[0]["rss"]) - set(last[-1]["rss"]))
    new = sorted(set(last[-1]["rss"]) - set(first[0]["rss"]))
    return {"per_process": out, "processes_gone": gone, "processes_new": new}


async def in_flight_after(url: str, settle_s: float = 10) -> dict[str, int]:
    """Sequences in flight per pool once the load stopped (waits up to ``settle_s`` for them to reach 0)."""
    deadline = time.monotonic() + settle_s
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            pools = (await client.get("/v1/fleet?profiles=false")).json()["pools"]
            left = {p["name"]: p["in_flight"] for p in pools}
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)


async def main_async(args) -> dict:
    server = _fleet_server.start(None, Path(args.log_dir), probe_model=REAL)
    samples: list = []
    tally = Tally()
    stop = asyncio.Event()
    try:
        sampler = asyncio.create_task(sample(server, args.sample_s, samples, stop))
        t0 = time.monotonic()
        await drive(server.url, args.duration_s, args.rate, args.seed, tally)
        wall = time.monotonic() - t0
        left = await in_flight_after(server.url)
        stop.set()
        await sampler
    finally:
        stopped = server.stop()
    mem = growth(samples, args.warmup_s, args.window_s)
    total = sum(tally.counts.values())
    return {
        "command": "python " + " ".join(sys.argv),
        "duration_s": args.duration_s, "wall_s": round(wall, 1), "rate": args.rate, "seed": args.seed,
        "requests": total, "outcomes": tally.counts, "by_kind": tally.by_kind, "lost": tally.counts.get("lost", 0),
        "lost_examples": tally.lost, "in_flight_after": left, "stop": stopped,
        "warmup_s": args.warmup_s, "window_s": args.window_s, "memory": mem,
        "max_growth_pct": max((v["growth_pct"] for v in mem.get("per_process", {}).values()), default=None),
        "samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration-s", type=float, default=1800)
    ap.add_argument("--rate", type=float, default=3.0, help="requests per second (Poisson)")
    ap.add_argument("--warmup-s", type=float, default=None, help="default: a sixth of the duration")
    ap.add_argument("--window-s", type=float, default=None, help="default: a tenth of the duration")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench/results/soak.json")
    ap.add_argument("--log-dir", default="soak-logs")
    args = ap.parse_args()
    args.warmup_s = args.duration_s / 6 if args.warmup_s is None else args.warmup_s
    args.window_s = args.duration_s / 10 if args.window_s is None else args.window_s
    result = asyncio.run(main_async(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    summary = {k: result[k] for k in ("requests", "outcomes", "lost", "in_flight_after", "stop", "max_growth_pct")}
    print(json.dumps(summary, indent=1))
    per = result["memory"].get("per_process", {})
    for key, v in sorted(per.items(), key=lambda kv: -kv[1]["last_mib"]):
        print(f"  {key:45s} {v['first_mib']:8.1f} -> {v['last_mib']:8.1f} MiB  {v['growth_pct']:+6.2f} %")
    ok = result["lost"] == 0 and not any(result["in_flight_after"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
