"""The load generator's own overhead: how hard one client core can push before it skews TTFT.

Run: python bench/bench_loadgen.py [--duration 4] [--max-rate 3200]

A fake streaming server (``loadtests.fake_server``) runs in its own process
on loopback; the runner (``loadtests.runner``, the real code path, one
asyncio loop, so at most one core) sends open-loop constant-rate load at
rising rates. For every request the server
records how long it took from handling the request to yielding the first
chunk; the client's TTFT minus that is the client's skew (building and
sending the request, loopback, reading and parsing the first chunk, and any
event-loop queueing on the client). The table shows the skew's p50 and p99,
the streamed tokens/s and the client's CPU use per level; the run stops at
the first level whose p50 skew exceeds 1 ms (or when the client falls
behind its schedule by more than 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.config import DataSpec, LoadSpec, RunSpec  # noqa: E402
from loadtests.fake_server import FakeConfig, FakeOpenAI  # noqa: E402
from loadtests.runner import run  # noqa: E402

SKEW_LIMIT_MS = 1.0
WORKLOADS = {  # name: (output tokens per request, gap per token in s, first rate)
    "short (32 tok, 5 ms/tok)": (32, 0.005, 25.0),
    "long (256 tok, 1 ms/tok)": (256, 0.001, 3.0),
}


def _serve(port_queue: multiprocessing.Queue, ttft_s: float, itl_s: float) -> None:
    fake = FakeOpenAI(FakeConfig(ttft_s=ttft_s, itl_s=itl_s, fleet=False))

    async def main() -> None:
        server = await fake.serve("127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _level(base_url: str, rate: float, duration: float, tokens: int) -> dict:
    spec = RunSpec(
        label="bench",
        base_url=base_url,
        model="fake-model",
        energy=False,
        timeout_s=30,
        load=LoadSpec(arrival="constant", rate=rate, duration_s=duration),
        data=DataSpec(prompt_tokens=128, output_tokens=tokens),
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcome = asyncio.run(run(spec, progress=False))
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    with urllib.request.urlopen(base_url + "/fake/first-chunk", timeout=10) as response:
        server_first = json.load(response)
    ok = [r for r in outcome.results if r.ok and r.request_id in server_first]
    skew = np.array([(r.ttft_s - server_first[r.request_id]) * 1000 for r in ok])
    s = outcome.summary
    return {
        "rate": rate,
        "achieved": s.request_throughput,
        "tokens_s": s.output_throughput,
        "skew_p50": float(np.percentile(skew, 50)) if len(skew) else float("nan"),
        "skew_p99": float(np.percentile(skew, 99)) if len(skew) else float("nan"),
        "lag_p99": s.dispatch_lag_ms.p99,
        "failed": s.failed,
        "cpu": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per level")
    parser.add_argument("--max-rate", type=float, default=3200.0)
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="the server's time to first token")
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.duration:g} s per level; "
          f"limit: p50 skew > {SKEW_LIMIT_MS} ms")
    limits = {}
    for name, (tokens, itl, first_rate) in WORKLOADS.items():
        ports: multiprocessing.Queue = multiprocessing.Queue()
        server = multiprocessing.Process(target=_serve, args=(ports, args.ttft_ms / 1000, itl), daemon=True)
        server.start()
        try:
            base_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
            print(f"\n{name}")
            print(f"{'offered':>8}{'req/s':>9}{'tok/s':>10}{'skew p50':>10}{'skew p99':>10}{'lag p99':>9}"
                  f"{'client cpu':>11}{'failed':>7}")
            rate, last_good = first_rate, None
            while rate <= args.max_rate:
                row = _level(base_url, rate, args.duration, tokens)
                print(f"{row['rate']:>8.0f}{row['achieved']:>9.1f}{row['tokens_s']:>10.0f}{row['skew_p50']:>9.2f} "
                      f"{row['skew_p99']:>9.2f} {row['lag_p99'] or 0:>8.2f}{row['cpu']:>10.0%}{row['failed']:>7}",
                      flush=True)
                if row["skew_p50"] > SKEW_LIMIT_MS or row["failed"] or row["achieved"] < 0.9 * rate:
                    break
                last_good = row
                rate *= 2
            limits[name] = last_good
        finally:
            server.terminate()
            server.join(timeout=10)
    print("\nhighest level within the limit:")
    for name, row in limits.items():
        text = "none" if row is None else f"{row['achieved']:.0f} req/s, {row['tokens_s']:.0f} streamed tok/s"
        print(f"  {name}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
