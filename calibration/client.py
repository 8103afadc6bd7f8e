"""The HTTP calls calibration makes, on top of the load tester's client.

A sweep reads the fleet (``GET /v1/fleet``, parsed with the gateway's own
``FleetView``) and sends pinned streaming completions of token-id prompts;
``loadtests.client`` sends them and parses their SSE. HTTP only: this
module never imports Ray, and ``transport`` lets tests fake the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from fleet.api import PIN_HEADER, FleetView, PoolView
from loadtests.client import Target, send_request
from loadtests.result import RequestResult as LoadResult

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "HETSERVE_API_KEY"


class Infeasible(Exception):
    """The gateway refused the length: 400 ``context_length_exceeded``."""


class RequestFailed(Exception):
    """Any other failure of one calibration request."""


@dataclass(frozen=True)
class RequestResult:
    ttft_s: float
    tpot_s: float | None  # None with fewer than two completion tokens
    output_tokens: int
    end: float  # clock reading when the stream ended


class GatewayClient:
    """Fleet reads and pinned completions against one gateway."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 600.0):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.timeout_s = timeout_s
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=10.0, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
        )
        #: The clock of ``RequestResult.end`` (the load tester times with perf_counter).
        self.clock: Callable[[], float] = time.perf_counter

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fleet(self) -> dict[str, PoolView]:
        """Pool views by name."""
        r = await self._http.get("/v1/fleet")
        if r.status_code != 200:
            raise RequestFailed(f"GET /v1/fleet: HTTP {r.status_code}: {r.text[:200]}")
        try:
            return FleetView.model_validate_json(r.content).by_name()
        except ValidationError as e:
            raise RequestFailed(f"GET /v1/fleet: not a hetserve fleet: {e.errors()[0]['msg']}") from None

    async def complete(self, pool: str, model: str, prompt_ids: list[int], max_tokens: int) -> RequestResult:
        """One pinned, greedy streaming completion; raises ``Infeasible`` or ``RequestFailed``."""
        target = Target(
            base_url=self.base_url, endpoint="completions", api_key=self.api_key,
            headers={PIN_HEADER: pool}, extra_body={"temperature": 0.0}, timeout_s=self.timeout_s,
        )
        res = await send_request(self._http, target, LoadResult(0, model, None), prompt_ids, max_tokens, 0.0)
        if res.error_type == "http_400" and res.error_code == "context_length_exceeded":
            raise Infeasible(res.error or "context length exceeded")
        if not res.ok:
            raise RequestFailed(f"{res.error_type}: {res.error}")
        if res.pool is not None and res.pool != pool:
            raise RequestFailed(f"pinned to {pool} but served by {res.pool}")
        first, last = res.chunk_s[0], res.chunk_s[-1]
        n = res.output_tokens or max_tokens
        tpot = (last - first) / (n - 1) if n > 1 else None
        return RequestResult(first, tpot, n, res.sent_s + (res.e2e_s or 0.0))
