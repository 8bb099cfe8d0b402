"""One lasting ib_async connection to IB Gateway: connected lazily, retried briefly, replaced when lost.

Connect retries are few and short (tenacity, fixed delay, `connect_attempts` x `connect_timeout_seconds`)
so a dead gateway fails the event fast and the queue keeps moving. Without a configured client id each
attempt draws a fresh one from `client_id_min..client_id_max`, which also steps around an id in use.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import structlog
from ib_async import IB
from tenacity import AsyncRetrying, stop_after_attempt, wait_fixed

from event_processor.brokers.models import BrokerError
from rebalancer_shared.config import IbkrSettings
from rebalancer_shared.transient import retry_if_transient

log = structlog.get_logger(__name__)

T = TypeVar("T")


class IbkrConnection:
    """Owns the `IB` client; `client()` returns a connected one or raises `BrokerError`."""

    def __init__(self, settings: IbkrSettings, ib_factory: Callable[[], IB] = IB) -> None:
        self.settings = settings
        self._ib_factory = ib_factory
        self._ib: IB | None = None
        self._lock = asyncio.Lock()
        self._was_connected = False
        self.generation = 0  # counts connections made; an order belongs to the one it was placed on

    @property
    def endpoint(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port()}"

    def is_connected(self) -> bool:
        return self._ib is not None and self._ib.isConnected()

    async def client(self) -> IB:
        """The connected client, connecting (or reconnecting after a drop) when needed."""
        async with self._lock:
            if self._ib is not None and self._ib.isConnected():
                return self._ib
            if self._ib is not None:
                self._ib.disconnect()
                self._ib = None
            if self._was_connected:
                log.warning("connection to IB Gateway was lost; reconnecting", endpoint=self.endpoint)
            self._ib = await self._connect()
            self._was_connected = True
            self.generation += 1
            return self._ib

    async def close(self) -> None:
        async with self._lock:
            if self._ib is not None:
                self._ib.disconnect()
                self._ib = None
            self._was_connected = False

    def _client_id(self) -> int:
        s = self.settings
        if s.client_id is not None:
            return s.client_id
        low, high = sorted((s.client_id_min, s.client_id_max))
        return low + secrets.randbelow(high - low + 1)

    async def _connect(self) -> IB:
        s = self.settings
        if s.trading_mode == "live":
            log.warning(
                "CONNECTING TO A LIVE TRADING ACCOUNT: orders placed through this connection use real money",
                endpoint=self.endpoint,
            )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.connect_attempts),
            wait=wait_fixed(s.connect_retry_delay_seconds),
            retry=retry_if_transient,  # refused, reset, timed out: the gateway may be starting
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(attempt.retry_state.attempt_number)
        except OSError as exc:
            raise BrokerError(
                f"cannot connect to IB Gateway at {self.endpoint} ({s.trading_mode} mode) after "
                f"{s.connect_attempts} attempt(s): {exc!r}; is the gateway running and logged in?"
            ) from exc
        raise BrokerError(f"cannot connect to IB Gateway at {self.endpoint}")  # pragma: no cover

    async def _attempt(self, number: int) -> IB:
        ib = self._ib_factory()
        client_id = self._client_id()
        log.info("connecting to IB Gateway", endpoint=self.endpoint, client_id=client_id, attempt=number)
        s = self.settings
        await ib.connectAsync(
            s.host, s.effective_port(), clientId=client_id, timeout=s.connect_timeout_seconds
        )
        log.info("connected to IB Gateway", endpoint=self.endpoint, client_id=client_id, mode=s.trading_mode)
        return ib

    async def request(self, what: str, awaitable: Awaitable[T]) -> T:
        """Await an ib_async request; a timeout or a dropped socket becomes a `BrokerError` naming `what`."""
        seconds = self.settings.request_timeout_seconds
        with self.translated(what):
            try:
                return await asyncio.wait_for(awaitable, seconds)
            except TimeoutError as exc:
                raise BrokerError(f"{what}: no answer from IB Gateway within {seconds:g} s") from exc

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Turn ib_async's ConnectionError (socket gone, or never there) into a `BrokerError`."""
        try:
            yield
        except ConnectionError as exc:
            raise BrokerError(f"{what}: connection to IB Gateway at {self.endpoint} lost ({exc})") from exc
