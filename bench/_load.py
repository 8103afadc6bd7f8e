"""The one client every benchmarked server gets: closed-loop async httpx, own timing.

``concurrency`` workers each send their next ``/v1/completions`` request when
the last one finished, until ``requests`` were sent or, with ``duration_s``,
until that much time passed (requests in flight then still finish and count;
the wall time runs to the last one). Streaming requests ask
for ``ignore_eos`` and ``stream_options.include_usage`` so every server
produces exactly ``max_tokens`` and reports how many. Per request it keeps
the time of the first content chunk (TTFT) and of every later content chunk;
inter-token latency (ITL) is the gap between consecutive content chunks, as
vLLM's own ``benchmark_serving`` counts it: a relay that merges tokens into
fewer chunks shows fewer, longer gaps. TPOT is ``(e2e - ttft) / (tokens - 1)``.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from loadtests.sse import SSEParser

_WORDS = "the model token energy power batch sequence latency prompt output request pool gpu npu cpu memory".split()


def prompt_for(i: int, words: int = 24) -> str:
    """A distinct prompt per request (no two share a long prefix), about ``words`` tokens."""
    return f"request {i}: " + " ".join(_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(words))


@dataclass
class Sample:
    ok: bool = False
    error: str = ""
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    output_tokens: int = 0
    chunk_s: list[float] = field(default_factory=list)  # arrival of each network read with content
    events: int = 0  # SSE events with content


async def one_request(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int, stream: bool) -> Sample:
    body = {"model": model, "prompt": prompt_for(i), "max_tokens": max_tokens, "temperature": 1.0,
            "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    s = Sample()
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
            if r.status_code != 200:
                s.error = f"http_{r.status_code}: {(await r.aread())[:200]!r}"
                return s
            if not stream:
                data = json.loads(await r.aread())
                s.e2e_s = s.ttft_s = time.perf_counter() - t0
                s.output_tokens = data["usage"]["completion_tokens"]
                s.ok = s.output_tokens > 0
                return s
            done = False
            parser = SSEParser()
            async for raw in r.aiter_bytes():
                # Every event in one network read arrived at the same time: one delivery.
                now = time.perf_counter() - t0
                content = False
                for data in parser.feed(raw):
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        s.error = f"stream_error: {str(chunk['error'])[:200]}"
                        return s
                    if any(c.get("text") for c in chunk.get("choices") or ()):
                        s.events += 1
                        content = True
                    if chunk.get("usage"):
                        s.output_tokens = chunk["usage"]["completion_tokens"]
                if content:
                    s.chunk_s.append(now)
            s.e2e_s = time.perf_counter() - t0
            if not done or not s.chunk_s:
                s.error = "incomplete_stream" if not done else "no_output"
                return s
            s.ttft_s = s.chunk_s[0]
            s.ok = s.output_tokens > 0
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
        s.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return s


async def closed_loop(url: str, *, concurrency: int, requests: int | None = None, max_tokens: int, stream: bool,
                      model: str = "tiny-llama", timeout_s: float = 300.0, first_index: int = 0,
                      duration_s: float | None = None) -> tuple[list[Sample], float]:
    """Run ``requests`` requests (or for ``duration_s``) through ``concurrency`` workers; return the samples and the wall time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = iter(range(first_index, first_index + requests)) if requests is not None else itertools.count(first_index)
    samples: list[Sample] = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        deadline = None if duration_s is None else time.perf_counter() + duration_s

        async def worker() -> None:
            for i in counter:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                samples.append(await one_request(client, url, model, i, max_tokens, stream))

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout_s * 2)
        wall = time.perf_counter() - t0
    return samples, wall


def medians(rows: list[dict], keys) -> dict:
    """Each figure's median over rounds and its spread (``KEY_spread``: the lowest and highest round);
    None where no round has it."""
    out = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
        out[f"{key}_spread"] = [min(values), max(values)] if values else None
    return out


def with_spread(row: dict, key: str, fmt: str) -> str:
    """``row[key]`` and its spread over rounds (from :func:`medians`) as "median (lowest-highest)"."""
    lo, hi = row[f"{key}_spread"] or (0, 0)
    return f"{row[key]:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def machine(engines: bool = True) -> dict:
    """The machine a benchmark ran on: cores, CPU model, Python and (``engines``) Ray and vLLM versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    found = {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}
    if not engines:  # the simulator's benchmarks load neither
        return found
    import ray
    import vllm

    return {**found, "ray": ray.__version__, "vllm": vllm.__version__}


def write_result(path: Path, benchmark: str, script: str, argv: list[str] | None, machine: dict, **fields) -> None:
    """A benchmark's JSON: its name, the date, the machine, the command that made it, then ``fields``."""
    doc = {"benchmark": benchmark, "date": datetime.date.today().isoformat(), "machine": machine,
           "command": f"bench/{script} " + shlex.join(argv if argv is not None else sys.argv[1:]), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def pct(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summarize(samples: list[Sample], wall_s: float, stream: bool) -> dict:
    ok = [s for s in samples if s.ok]
    tokens = sum(s.output_tokens for s in ok)
    ttft = [s.ttft_s * 1e3 for s in ok]
    itl = [(b - a) * 1e3 for s in ok for a, b in zip(s.chunk_s, s.chunk_s[1:])]
    tpot = [(s.e2e_s - s.ttft_s) * 1e3 / (s.output_tokens - 1) for s in ok if stream and s.output_tokens > 1]
    deliveries = sum(len(s.chunk_s) for s in ok)
    return {
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "first_error": next((s.error for s in samples if not s.ok), None),
        "wall_s": wall_s,
        "output_tokens": tokens,
        "tok_s": tokens / wall_s if wall_s > 0 else 0.0,
        "req_s": len(ok) / wall_s if wall_s > 0 else 0.0,
        "ttft_ms_p50": pct(ttft, 50),
        "ttft_ms_p99": pct(ttft, 99),
        "e2e_ms_p50": pct([s.e2e_s * 1e3 for s in ok], 50),
        "e2e_ms_p99": pct([s.e2e_s * 1e3 for s in ok], 99),
        "itl_ms_p50": pct(itl, 50),
        "itl_ms_p99": pct(itl, 99),
        "tpot_ms_p50": pct(tpot, 50),
        "tpot_ms_p99": pct(tpot, 99),
        "tokens_per_delivery": tokens / deliveries if stream and deliveries else None,
        "tokens_per_event": tokens / sum(s.events for s in ok) if stream and ok else None,
    }
