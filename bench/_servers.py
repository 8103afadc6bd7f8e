"""Start, measure and stop the servers the benchmarks compare, one at a time.

Each server runs in its own process tree (so a crash or a stuck Ray cluster
cannot take the harness down, and CPU time can be read per role):

- ``vllm``: vLLM's own OpenAI server, ``python -m vllm.entrypoints.openai.api_server``;
- ``rayllm``: ``ray.serve.llm.build_openai_app`` on a fresh local Ray cluster;
- ``hetserve``: hetserve (``gateway.server.start``) with a fleet file;
- ``plain``: a minimal FastAPI/uvicorn app calling hetserve's ``VLLMEngine``
  adapter in-process, without Ray (the gateway-overhead baseline).

All serve the tiny Llama (:func:`workers.tiny_model.ensure_tiny_model`) as
``tiny-llama`` with the same engine settings (:data:`ENGINE`), bind
127.0.0.1 on a free port and are stopped (Ray cluster included) before the
next one starts.

Run as a script, this module *is* the server process of the Ray-based and
plain kinds: ``python bench/_servers.py serve KIND --port P [...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import Request  # module level: the plain server's handler annotation must resolve

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.ingress import free_port  # noqa: E402

MODEL_NAME = "tiny-llama"
#: Engine settings shared by every server under comparison.
ENGINE = {"dtype": "bfloat16", "max_model_len": 2048, "max_num_seqs": 64}
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
KINDS = ("vllm", "rayllm", "hetserve", "plain")
START_TIMEOUT_S = 300.0
#: A resumed server is measured once it answered this many completions in a row.
RESUMED_AFTER_ANSWERS = 5
STOP_TIMEOUT_S = 60.0


def model_dir() -> str:
    from workers.tiny_model import ensure_tiny_model

    return str(ensure_tiny_model())


# -- CPU accounting ----------------------------------------------------------


def role_of(cmdline: list[str], name: str) -> str:
    """Which part of a server a process is, from its (Ray/vLLM-set) process title."""
    title = " ".join(cmdline) if cmdline else name
    if "VLLM::EngineCore" in title or "VLLM::Worker" in title or "RayWorkerWrapper" in title:
        return "engine"
    if "ray::ProxyActor" in title:
        return "proxy"
    if "haproxy" in title.lower() and "ServeReplica" not in title:
        return "haproxy"
    if "ray::ServeReplica" in title:
        # hetserve's pool replicas and ray.serve.llm's LLMServer own the engine's frontend (AsyncLLM).
        if ":gateway" in title or "Ingress" in title or "Router" in title:
            return "ingress"
        return "llm_replica"
    if "ray::ServeController" in title:
        return "controller"
    if "vllm.entrypoints" in title:
        return "frontend"
    if "_servers.py" in title:
        return "driver"
    if "gcs_server" in title or "raylet" in title or "/ray/" in title:
        return "ray"  # the cluster's own processes: GCS, raylet, dashboard and its agent, log monitor, idle workers
    return "other"


def _processes_by_role(root_pid: int, role: Callable[[list[str], str], str] = role_of) -> dict[str, list]:
    """The live processes of a tree (root included), grouped by ``role`` (of a command line and a name)."""
    import psutil

    out: dict[str, list] = {}
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            out.setdefault(role(p.cmdline(), p.name()), []).append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def cpu_by_role(root_pid: int, role: Callable[[list[str], str], str] = role_of) -> dict[str, float]:
    """CPU seconds (user + system) of a process tree, summed per ``role`` (default :func:`role_of`)."""
    import psutil

    out: dict[str, float] = {}
    for name, procs in _processes_by_role(root_pid, role).items():
        for p in procs:
            try:
                t = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            out[name] = out.get(name, 0.0) + t.user + t.system
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per role spent between two :func:`cpu_by_role` readings."""
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}


#: The roles that make up a gateway: what a request crosses before the pool's replica.
GATEWAY_ROLES = ("proxy", "ingress", "haproxy")


def gateway_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the gateway roles in a :func:`cpu_delta`."""
    return sum(cpu.get(role, 0.0) for role in GATEWAY_ROLES)


def pids_by_role(root_pid: int) -> dict[str, list[int]]:
    return {role: [p.pid for p in procs] for role, procs in _processes_by_role(root_pid).items()}


# -- the harness side ----------------------------------------------------------


@dataclass
class Server:
    """One running server process tree."""

    kind: str
    label: str
    url: str
    proc: subprocess.Popen
    started_s: float
    log_path: Path
    options: dict = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return cpu_by_role(self.proc.pid)

    def pids(self) -> dict[str, list[int]]:
        return pids_by_role(self.proc.pid)

    def pause(self) -> None:
        """SIGSTOP the whole tree: a server not being measured takes no CPU (a Ray cluster's controller,
        GCS and raylet poll even when idle) while another one is."""
        self._signal_tree("suspend")

    def resume(self, answering_within_s: float = 60.0) -> None:
        """SIGCONT the tree, then wait until it answers again: its health checks and proxies catch up on
        the timers that fired while it was stopped (HAProxy may call its backend down for a moment)."""
        self._signal_tree("resume")
        body = {"model": MODEL_NAME, "prompt": "resume", "max_tokens": 1}
        deadline, in_a_row = time.monotonic() + answering_within_s, 0
        while in_a_row < RESUMED_AFTER_ANSWERS:
            if time.monotonic() > deadline:  # measuring a server that does not answer would be no measurement
                raise RuntimeError(f"{self.url} did not answer {RESUMED_AFTER_ANSWERS} completions in a row "
                                   f"within {answering_within_s:.0f} s of resuming; see {self.log_path}")
            try:
                ok = httpx.post(f"{self.url}/v1/completions", json=body, timeout=10).status_code == 200
            except httpx.HTTPError:
                ok = False
            in_a_row = in_a_row + 1 if ok else 0
            if not ok:
                time.sleep(0.5)

    def _signal_tree(self, action: str) -> None:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            try:
                getattr(p, action)()
            except psutil.NoSuchProcess:
                pass

    def stop(self) -> None:
        """SIGTERM (the server shuts its Ray cluster down), then SIGKILL whatever is left of the tree."""
        self._signal_tree("resume")
        import psutil

        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=10)


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it after ``free_port`` chose it (a port of
    the ephemeral range, which other processes' outgoing connections use too)."""


#: Starts tried when the port chosen was taken meanwhile.
START_ATTEMPTS = 3


def start_server(kind: str, *, label: str | None = None, log_dir: Path, env: dict[str, str] | None = None,
                 root: Path | None = None, cpus: str | None = None, **options) -> Server:
    """Start a server of ``kind`` on a free loopback port; return once it answered a completion.

    ``root``: the source tree a hetserve server runs from (another commit's, :func:`source_tree`).
    ``cpus``: the CPUs (``taskset -c`` list) its processes start on; an engine that binds its own
    compute threads (vLLM's ``VLLM_CPU_OMP_THREADS_BIND``) still binds them where it says."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}; known: {', '.join(KINDS)}")
    for _ in range(START_ATTEMPTS - 1):
        try:
            return _start_once(kind, label or kind, log_dir, env, root or ROOT, cpus, options)
        except PortTaken as exc:
            print(f"{exc}; starting it again", file=sys.stderr)
    return _start_once(kind, label or kind, log_dir, env, root or ROOT, cpus, options)


def _start_once(kind: str, label: str, log_dir: Path, env: dict[str, str] | None, root: Path, cpus: str | None,
                options: dict) -> Server:
    port = free_port()
    mdir = model_dir()
    full_env = {**os.environ, **ENGINE_ENV, "PYTHONPATH": str(root), **(env or {})}
    full_env.pop("RAY_ADDRESS", None)  # never attach to another cluster (the test session's, a stale one)
    if kind == "vllm":
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", mdir, "--served-model-name", MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(port),
            "--dtype", ENGINE["dtype"], "--max-model-len", str(ENGINE["max_model_len"]),
            "--max-num-seqs", str(ENGINE["max_num_seqs"]),
            "--disable-uvicorn-access-log", "--disable-log-stats",
        ]
    else:
        cmd = [sys.executable, str(root / "bench" / "_servers.py"), "serve", kind, "--port", str(port),
               "--options", json.dumps(options)]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.log"
    log = open(log_path, "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(root))
    server = Server(kind, label, f"http://127.0.0.1:{port}", proc, 0.0, log_path, options)
    try:
        _wait_ready(server, t0)
    except BaseException as exc:
        server.stop()
        if isinstance(exc, Exception) and _port_taken(log_path, port):
            raise PortTaken(f"{label}: port {port} was taken before it could bind it") from exc
        raise
    server.started_s = time.monotonic() - t0
    return server


def _port_taken(log_path: Path, port: int) -> bool:
    """Whether the server's log says it could not bind ``port`` (HAProxy: "cannot bind socket (Address already
    in use) [127.0.0.1:PORT]"; uvicorn: "... ('127.0.0.1', PORT): address already in use"), not some other
    port Ray or Serve wanted."""
    tail = log_path.read_bytes()[-20000:].decode(errors="replace")
    return any("address already in use" in line.lower() and re.search(rf"\b{port}\b", line)
               for line in tail.splitlines())


@contextlib.contextmanager
def source_tree(ref: str) -> Iterator[Path]:
    """A checkout of commit ``ref`` of this repository (a detached git worktree), removed afterwards:
    a benchmark runs the code before a change beside the code after it, in one run."""
    known = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        raise SystemExit(f"--baseline {ref}: no such commit in this clone (a shallow clone has only its tip:"
                         f" `git fetch --unshallow`, then run again)")
    parent = Path(tempfile.mkdtemp(prefix="hetserve-baseline-"))
    path = parent / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(parent, ignore_errors=True)


def _all_pools_ready(url: str) -> bool:
    r = httpx.get(f"{url}/ready", timeout=30)
    return r.status_code == 200 and bool(r.json().get("all_pools_ready"))


def _wait_ready(server: Server, t0: float) -> None:
    body = {"model": MODEL_NAME, "prompt": "warm up", "max_tokens": 2}
    while True:
        if server.proc.poll() is not None:
            tail = server.log_path.read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"{server.label} exited with {server.proc.returncode} before answering:\n{tail}")
        try:
            r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
            # hetserve also says when every pool of its fleet can serve (GET /ready).
            if r.status_code == 200 and (server.kind != "hetserve" or _all_pools_ready(server.url)):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > START_TIMEOUT_S:
            raise RuntimeError(f"{server.label} did not answer within {START_TIMEOUT_S:.0f} s (log: {server.log_path})")
        time.sleep(1.0)


# -- the server side -----------------------------------------------------------


def _serve_rayllm(port: int, options: dict) -> None:
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, LLMServingArgs, build_openai_app

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="bench")
    config = LLMConfig(
        model_loading_config=dict(model_id=MODEL_NAME, model_source=model_dir()),
        accelerator_config=dict(kind="cpu"),
        engine_kwargs=dict(ENGINE),
        runtime_env=dict(env_vars=dict(ENGINE_ENV)),
        log_engine_metrics=False,
    )
    if os.environ.get("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING") == "1":
        # The LLM server is the ingress itself: ray.serve.llm refuses an ingress_deployment_config then.
        app = build_openai_app(LLMServingArgs(llm_configs=[config]))
    else:
        app = build_openai_app(
            LLMServingArgs(llm_configs=[config], ingress_deployment_config=dict(ray_actor_options=dict(num_cpus=0)))
        )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(app, name="rayllm", route_prefix="/", blocking=False)


def _serve_hetserve(port: int, options: dict) -> None:
    from gateway import server
    from fleet.config import load_fleet

    fleet, _ = load_fleet(options.get("fleet") or ROOT / "bench" / "fleets" / "cpu-vllm.yaml")
    if options.get("relay_window_s") is not None:
        fleet.gateway.relay_window_s = float(options["relay_window_s"])
    server.start(fleet, host="127.0.0.1", port=port, num_cpus=2)


def _serve_plain(port: int, options: dict) -> None:
    """FastAPI + uvicorn calling the VLLMEngine adapter in this process: no Ray at all."""
    import asyncio
    import uuid

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    from workers.engine import EngineRequest, SamplingParams
    from workers.vllm_engine import VLLMEngine

    app = FastAPI()
    engine = VLLMEngine(model_dir(), **ENGINE)

    @app.on_event("startup")
    async def _start() -> None:
        await engine.start()

    @app.on_event("shutdown")
    async def _stop() -> None:
        await engine.shutdown()

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = json.loads(await request.body())
        rid = uuid.uuid4().hex
        params = SamplingParams(
            max_tokens=int(body.get("max_tokens") or 16),
            temperature=float(body.get("temperature", 1.0)),
            ignore_eos=bool(body.get("ignore_eos", False)),
        )
        req = EngineRequest(rid, prompt=body["prompt"], params=params)
        created = int(time.time())

        def chunk(text: str, finish) -> dict:
            return {"id": rid, "object": "text_completion", "created": created, "model": MODEL_NAME,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

        if not body.get("stream"):
            parts, last = [], None
            async for d in engine.generate(req):
                parts.append(d.text)
                last = d
            out = chunk("".join(parts), last.finish_reason)
            out["usage"] = {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.output_tokens,
                            "total_tokens": last.prompt_tokens + last.output_tokens}
            return JSONResponse(out)

        async def sse():
            last = None
            async for d in engine.generate(req):
                last = d
                yield f"data: {json.dumps(chunk(d.text, d.finish_reason))}\n\n"
            if (body.get("stream_options") or {}).get("include_usage") and last is not None:
                u = chunk("", None)
                u["choices"] = []
                u["usage"] = {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.output_tokens,
                              "total_tokens": last.prompt_tokens + last.output_tokens}
                yield f"data: {json.dumps(u)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # uvicorn shuts down on SIGTERM (running the shutdown hook), then re-raises the signal.
    asyncio.run(server.serve())


def _serve(kind: str, port: int, options: dict) -> None:
    if kind == "plain":
        _serve_plain(port, options)
        return
    os.environ.pop("RAY_ADDRESS", None)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    try:
        (_serve_rayllm if kind == "rayllm" else _serve_hetserve)(port, options)
        print(f"serving {kind} on 127.0.0.1:{port}", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        from ray import serve
        import ray

        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("kind", choices=[k for k in KINDS if k != "vllm"])
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--options", default="{}")
    args = parser.parse_args(argv)
    _serve(args.kind, args.port, json.loads(args.options))


if __name__ == "__main__":
    main()
