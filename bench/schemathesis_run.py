"""Schemathesis against a live gateway with OpenAI's OpenAPI document: 1,000+ generated requests, 0 server errors.

The check of ``tests/integration/test_conformance.py`` at a larger count,
against a fleet of emulated pools (fast to start, no model to load): every
answer must be below 500, every non-streamed 200 must match OpenAI's
response schema, every 4xx must have OpenAI's error shape.

    python bench/schemathesis_run.py --spec ../shared/conformance/openai-openapi.yaml --out bench/results/schemathesis.json

``--spec``: OpenAI's document (github.com/openai/openai-openapi), not part of this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fleet_server  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FLEET = {
    "pools": [
        {"name": "h100", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL],
         "max_ongoing_requests": 64, "engine_args": {"time_scale": 0.05}},  # 20x the modelled speed: cases, not timing
    ],
}
#: Generated cases per operation.
OPERATIONS = {"createChatCompletion": 450, "createCompletion": 450, "listModels": 50, "retrieveModel": 100}


def _served(case) -> None:
    """Point three bodies in four at the served model with small outputs, so 200s get checked too."""
    body = case.body
    if isinstance(body, dict) and "model" in body and hash(str(body)) % 4:
        body["model"] = MODEL
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = max(1, min(body[key], 8))
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = 8  # else 512 tokens per case
        if isinstance(body.get("n"), int):
            body["n"] = max(1, min(body["n"], 2))


def run(spec: Path, url: str, scale: float) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_path(spec)
    report: dict = {}
    for op_id, n in OPERATIONS.items():
        operation = schema.find_operation_by_id(op_id)
        seen: dict[str, int] = {}
        failures: list[str] = []

        @given(case=operation.as_strategy())
        @settings(max_examples=max(1, int(n * scale)), deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case):
            _served(case)
            try:
                response = case.call(base_url=f"{url}/v1", timeout=60)
            except Exception as exc:  # a connection the gateway dropped is a server failure
                seen["connection"] = seen.get("connection", 0) + 1
                failures.append(f"connection: {exc!r}"[:300])
                return
            seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1
            problem = None
            if response.status_code >= 500:
                problem = f"{response.status_code}: {response.text[:300]}"
            elif response.status_code == 200 and "text/event-stream" not in response.headers.get("content-type", ""):
                try:
                    operation.validate_response(response)
                except Exception as exc:
                    problem = f"200 off-schema: {str(exc)[:300]}"
            elif response.status_code >= 400:
                error = response.json().get("error", {})
                if set(error) != {"message", "type", "param", "code"}:
                    problem = f"{response.status_code} not OpenAI's error shape: {response.text[:200]}"
            if problem and len(failures) < 20:
                failures.append(problem)
            seen["failed"] = seen.get("failed", 0) + (1 if problem else 0)

        t0 = time.monotonic()
        check()
        report[op_id] = {"by_status": seen, "cases": sum(v for k, v in seen.items() if k != "failed"),
                         "failed": seen.get("failed", 0) + seen.get("connection", 0), "failures": failures,
                         "wall_s": round(time.monotonic() - t0, 1)}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default=str(Path(__file__).resolve().parents[2] / "shared" / "conformance" / "openai-openapi.yaml"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the cases per operation (1.0: 1,050)")
    ap.add_argument("--out", default="bench/results/schemathesis.json")
    ap.add_argument("--log-dir", default="schemathesis-logs")
    args = ap.parse_args()
    spec = Path(args.spec)
    if not spec.exists():
        print(f"no OpenAPI document at {spec}: pass --spec", file=sys.stderr)
        return 2
    server = _fleet_server.start(FLEET, Path(args.log_dir), probe_model=MODEL)
    try:
        report = run(spec, server.url, args.scale)
    finally:
        stopped = server.stop()
    result = {
        "command": "python " + " ".join(sys.argv), "operations": report, "stop": stopped,
        "cases": sum(r["cases"] for r in report.values()),
        "server_errors": sum(r["by_status"].get(s, 0) for r in report.values() for s in r["by_status"]
                             if s == "connection" or (s.isdigit() and int(s) >= 500)),
        "failed": sum(r["failed"] for r in report.values()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "operations"}, indent=1))
    for op, r in report.items():
        print(f"  {op:22s} {r['cases']:5d} cases  {r['by_status']}  {r['wall_s']} s")
        for f in r["failures"][:5]:
            print(f"      {f}")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
