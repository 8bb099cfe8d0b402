"""`AllocationClient`: GET {base_url}/{channel}/allocations with the API key, a timeout and a few
short retries (tenacity, fixed delay) for failures that may pass: connection errors, timeouts and
HTTP 5xx/429, which the shared `rebalancer_shared.transient.is_transient` calls transient. A 4xx or
a response that fails validation is not retried here; the event retries later from the back of the
queue, with nothing traded.

Given the trigger an event came from, the events of one trigger share one request per channel
(`SharedFetches`); each use still validates the answer.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import structlog
from tenacity import AsyncRetrying, stop_after_attempt, wait_fixed

from event_processor.allocations.models import AllocationError, TargetAllocation, parse_allocation_response
from event_processor.allocations.shared_fetches import SharedFetches
from rebalancer_shared.config import AllocationSettings
from rebalancer_shared.errors import ServerUnavailableError
from rebalancer_shared.transient import is_transient, retry_if_transient

log = structlog.get_logger(__name__)


class AllocationUnavailable(AllocationError, ServerUnavailableError):
    """The API could not answer (network, timeout, HTTP 5xx or 429): transient, retried at once."""


class AllocationClient:
    """Fetches and validates a strategy's target weights."""

    def __init__(self, settings: AllocationSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_seconds)
        self._owns_http = http is None
        self._shared = SharedFetches()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    def url_for(self, channel: str) -> str:
        """The allocations URL of a channel."""
        return f"{self.settings.base_url.rstrip('/')}/{quote(channel, safe='')}/allocations"

    async def fetch(self, channel: str, trigger: str | None = None) -> TargetAllocation:
        """The channel's validated target weights; `AllocationError` naming the problem otherwise.

        With `trigger` (the id of the trigger the event came from), the events of one trigger share
        one request; the answer is validated on every use all the same."""
        if trigger is None:
            body = await self._get_with_retries(channel)
        else:
            body = await self._shared.get((channel, trigger), lambda: self._get_with_retries(channel))
        allocation = parse_allocation_response(channel, body, self.settings.sum_tolerance)
        log.info(
            "allocations fetched",
            channel=channel,
            strategy=allocation.name,
            strategy_long_name=allocation.long_name,
            last_rebalance_on=allocation.last_rebalance_on,
            as_of=allocation.as_of,
            symbols=len(allocation.weights),
        )
        return allocation

    async def _get_with_retries(self, channel: str) -> object:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.attempts),
            wait=wait_fixed(self.settings.retry_delay_seconds),
            retry=retry_if_transient,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get(channel)
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _get(self, channel: str) -> object:
        url = self.url_for(channel)
        headers = {"accept": "application/json"}
        if self.settings.api_key is not None:
            headers[self.settings.api_key_header] = self.settings.api_key.get_secret_value()
        try:
            response = await self._http.get(url, headers=headers, timeout=self.settings.timeout_seconds)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            kind = AllocationUnavailable if is_transient(exc) else AllocationError
            raise kind(f"allocation API GET {url}: {self._describe(exc)}") from exc
        if response.status_code != 200:
            raise AllocationError(f"allocation API GET {url}: HTTP {response.status_code}")
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AllocationError(f"allocation API GET {url}: response is not valid JSON") from exc

    def _describe(self, exc: httpx.HTTPError) -> str:
        """What went wrong, without the URL (said before) or the key (never said)."""
        if isinstance(exc, httpx.HTTPStatusError):
            return f"HTTP {exc.response.status_code}"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out after {self.settings.timeout_seconds}s"
        return f"{type(exc).__name__}: {exc}"
