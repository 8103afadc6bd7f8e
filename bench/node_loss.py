"""Node loss: a worker node dies under streaming load and comes back.

Run: .venv/bin/python bench/node_loss.py [--repetitions 3] [--clients 4]

A Ray cluster of three raylets on this machine (``bench/_cluster.py``): the
head holds the gateway (``gateway.resources``) and Serve's only HTTP proxy
(``proxy_location: HeadOnly``); one worker holds an ``h100`` resource, the
other ``FURIOSA``. Two emulated pools serve one model, one on each worker,
routed by least load. ``hetserve serve --address`` serves them; ``--clients``
official ``openai`` clients stream completions without pause. Each repetition
kills every process of the ``FURIOSA`` node at once (SIGKILL, as a host that
dies), waits until the gateway reports the pool unhealthy (``/v1/fleet``)
and down (``ready: false``: its polls failed), holds it down for ``--down-s`` seconds, restarts the raylet with the same
resources and waits until the pool is healthy and a request is served on it.

Per repetition: requests that failed before their first byte (the figure
that must be 0: the gateway had not committed to them), streams broken after
their first bytes (they ran on the lost node), requests the gateway moved to
the other pool, seconds from the kill to the pool reported unhealthy
(*detect*: a failed request ejects it, or the polls take it down) and to the
pool down by its polls (*down*), and seconds from the node's restart to
the pool healthy again and to its first request served (*recover*).
Results: ``bench/results/node_loss.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._cluster import BIN, LocalCluster  # noqa: E402
from deploy.ingress import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODEL = "m"
GATEWAY_RESOURCE = "hetserve_gateway"
LOST = {"FURIOSA": 1}


def fleet(time_scale: float = 20, gateway: dict | None = None) -> dict:
    """Two pools of one model on two nodes; the gateway and the only proxy on the head."""
    return {
        "gateway": {"resources": {GATEWAY_RESOURCE: 0.001}, "proxy_location": "HeadOnly", **(gateway or {})},
        "routing": {"policy": "least-load"},
        "pools": [
            {"name": name, "hardware": hw, "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
             "engine_args": {"time_scale": time_scale}, "resources": {resource: 1}}
            for name, hw, resource in (("h100", "h100", "h100"), ("rngd", "rngd", "FURIOSA"))
        ],
    }  # fmt: skip


def start_cluster() -> tuple[LocalCluster, dict]:
    """The cluster and its workers by resource."""
    cluster = LocalCluster(head_resources={GATEWAY_RESOURCE: 1}).start()
    try:
        workers = {name: cluster.add_worker(res) for name, res in (("h100", {"h100": 1}), ("rngd", LOST))}
    except BaseException:
        cluster.stop()
        raise
    return cluster, workers


def serve(cluster: LocalCluster, fleet_file: Path, port: int) -> subprocess.Popen:
    """``hetserve serve --address``, its output in ``serve.log`` beside the fleet file."""
    with (fleet_file.parent / "serve.log").open("w") as log:
        return subprocess.Popen(
            [str(BIN / "hetserve"), "serve", "--fleet", str(fleet_file), "--address", cluster.address,
             "--port", str(port)], env=cluster.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_ready(url: str, seconds: float) -> None:
    """Until every pool answers (``/ready`` with ``all_pools_ready``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/ready", timeout=5)
            if r.status_code == 200 and r.json()["all_pools_ready"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not have every pool ready in {seconds:.0f} s")


@dataclass
class Outcome:
    start: float
    end: float
    first_byte: float | None  # None: nothing came back
    pool: str | None
    ok: bool
    error: str | None = None

    @property
    def failed_before_first_byte(self) -> bool:
        return not self.ok and self.first_byte is None

    @property
    def broken_after_first_byte(self) -> bool:
        return not self.ok and self.first_byte is not None


class Load:
    """``clients`` official openai clients streaming completions back to back, on a thread of their own."""

    def __init__(self, url: str, clients: int = 4, max_tokens: int = 12):
        self.url, self.clients, self.max_tokens = url, clients, max_tokens
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join(timeout=120)
        return self.outcomes

    async def _run(self) -> None:
        import openai

        client = openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0, timeout=60)
        await asyncio.gather(*(self._client(client, i) for i in range(self.clients)))

    async def _client(self, client, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            start, first, pool = time.monotonic(), None, None
            try:
                raw = await client.completions.with_raw_response.create(
                    model=MODEL, prompt=f"client {i} request {n}", max_tokens=self.max_tokens, stream=True
                )
                pool = raw.headers.get("x-hetserve-pool")
                finished = False
                async for chunk in raw.parse():
                    first = first or time.monotonic()
                    finished = finished or any(c.finish_reason for c in chunk.choices)
                if not finished:
                    raise RuntimeError("the stream ended without a finish reason")
                self.outcomes.append(Outcome(start, time.monotonic(), first, pool, True))
            except Exception as exc:  # counted, never retried: the figure is what a client without retries sees
                self.outcomes.append(Outcome(start, time.monotonic(), first, pool, False, f"{type(exc).__name__}: {exc}"[:300]))


def pool_view(url: str, pool: str) -> dict:
    try:
        pools = httpx.get(f"{url}/v1/fleet", params={"profiles": "false"}, timeout=5).json()["pools"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return next(p for p in pools if p["name"] == pool)


def wait_pool(url: str, pool: str, key: str, value: bool, seconds: float, every_s: float = 0.2) -> float:
    """The monotonic time at which ``/v1/fleet`` first showed ``pool``'s ``key`` (healthy, ready) as ``value``.

    ``healthy`` falls with the first failed request (ejection) or the polls (down); ``ready`` only with the polls.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pool_view(url, pool).get(key) is value:
            return time.monotonic()
        time.sleep(every_s)
    raise AssertionError(f"pool {pool} did not show {key}={value} within {seconds:.0f} s")


def served_on(url: str, pool: str, seconds: float) -> float:
    """The monotonic time a request pinned to ``pool`` first succeeded."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "back?", "max_tokens": 2},
                           headers={"x-hetserve-pool-pin": pool}, timeout=30)  # fmt: skip
            if r.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"pool {pool} served no request within {seconds:.0f} s")


def retries_from(url: str, pool: str) -> float:
    """Requests the gateway moved off ``pool`` before their first byte, so far (``/metrics``)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hetserve_retries_total{") and f'failed_pool="{pool}"' in line)  # fmt: skip


def lose_and_recover(cluster: LocalCluster, worker, url: str, load: Load, down_s: float, on_down=None) -> dict:
    """One repetition under ``load``: kill ``worker``'s node, wait until its pool is unhealthy, hold it down
    ``down_s``, restart it with the same resources, wait until the pool serves again. ``on_down(url)`` runs
    while the pool is down (the test's checks)."""
    pool = "rngd"
    begun = time.monotonic()
    time.sleep(2)  # load on both pools
    retried = retries_from(url, pool)
    killed = time.monotonic()
    cluster.lose(worker)
    detected = wait_pool(url, pool, "healthy", False, 120)
    down = wait_pool(url, pool, "ready", False, 120)
    if on_down is not None:
        on_down(url)
    time.sleep(down_s)
    restarted = time.monotonic()
    back = cluster.add_worker(LOST)
    node_up = time.monotonic()
    healthy = wait_pool(url, pool, "healthy", True, 240)
    served = served_on(url, pool, 120)
    time.sleep(2)  # load on both pools again
    ended = time.monotonic()
    during = [o for o in load.outcomes if begun <= o.end < ended]  # each request in the repetition it ended in
    return {
        "worker": back,
        "requests": len(during),
        "ok": sum(o.ok for o in during),
        "failed_before_first_byte": sum(o.failed_before_first_byte for o in during),
        "broken_after_first_byte": sum(o.broken_after_first_byte for o in during),
        "moved_to_another_pool": int(retries_from(url, pool) - retried),
        "errors": sorted({o.error for o in during if o.error})[:5],
        "detect_s": round(detected - killed, 2),
        "down_s": round(down - killed, 2),
        "node_start_s": round(node_up - restarted, 2),
        "recover_healthy_s": round(healthy - node_up, 2),
        "recover_served_s": round(served - node_up, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--down-s", type=float, default=5.0, help="how long the node stays lost once detected")
    ap.add_argument("--out", default=str(RESULTS / "node_loss.json"))
    args = ap.parse_args()

    cluster, workers = start_cluster()
    proc = None
    try:
        fleet_file = Path(cluster.temp) / "fleet.yaml"
        spec = fleet()
        fleet_file.write_text(yaml.safe_dump(spec))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = serve(cluster, fleet_file, port)
        wait_ready(url, 300)
        worker = workers["rngd"]
        reps = []
        with Load(url, args.clients) as load:
            for i in range(args.repetitions):
                rep = lose_and_recover(cluster, worker, url, load, args.down_s)
                worker = rep.pop("worker")
                print(json.dumps(rep), flush=True)
                reps.append(rep)
        gateway = spec["gateway"]
        from fleet.config import GatewaySpec

        defaults = GatewaySpec.model_validate(gateway)
        summary = {
            k: {"median": statistics.median(r[k] for r in reps), "min": min(r[k] for r in reps),
                "max": max(r[k] for r in reps)}
            for k in ("detect_s", "down_s", "recover_healthy_s", "recover_served_s", "failed_before_first_byte",
                      "broken_after_first_byte", "moved_to_another_pool", "requests")
        }  # fmt: skip
        import ray

        doc = {
            "benchmark": "node_loss",
            "date": datetime.date.today().isoformat(),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                        "shared": "other jobs ran on the machine at the same time"},
            "command": "bench/node_loss.py " + " ".join(sys.argv[1:]),
            "setup": {"clients": args.clients, "down_s": args.down_s, "max_tokens": 12, "pools": ["h100", "rngd"],
                      "lost": "every process of the FURIOSA node (SIGKILL)",
                      "poll_interval_s": defaults.poll_interval_s, "poll_timeout_s": defaults.poll_timeout_s,
                      "down_after_failed_polls": defaults.down_after_failed_polls},
            "repetitions": reps,
            "summary": summary,
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps(summary, indent=1))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
