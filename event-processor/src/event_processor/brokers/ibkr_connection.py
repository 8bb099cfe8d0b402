"""One lasting ib_async connection to IB Gateway: connected lazily, retried briefly, replaced when lost.

Connect retries are few and short (tenacity, fixed delay, `connect_attempts` x `connect_timeout_seconds`)
so a dead gateway fails the event fast and the queue keeps moving. A connection has a fixed client id
(an account's trading id, or the configured `IB_CLIENT_ID`) or, without one, draws a fresh one from
`client_id_min..client_id_max` at each attempt. A fixed id the gateway says is in use (error 326: an
earlier connection with it is still open) is tried again briefly, then named in the error.

Connecting opens the API session and nothing else: ib_async's `connectAsync` would also ask for the
positions of every account of the login and subscribe to their changes (800 rows to decode with 200
accounts, and every other account's fills afterwards), open orders, executions and account values,
none of which a connection here uses unasked (positions come per account, ibkr_positions.py). So a
connection is ready after two round trips.
Requests whose answers ib_async files under a fixed name go one at a time per connection, shared by
the callers that asked meanwhile (`ibkr_requests.SharedRequest`): open orders and the gateway's
time. The market data type is the connection's too: `market_data_type` remembers the last one sent.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TypeVar

import structlog
from ib_async import IB, Trade
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from event_processor.brokers.gateway_status import GatewayStatus
from event_processor.brokers.ibkr_pacing import MESSAGES_PER_WINDOW, send_room
from event_processor.brokers.ibkr_requests import SharedRequest
from event_processor.brokers.models import BrokerError
from rebalancer_shared.config import IbkrSettings
from rebalancer_shared.transient import retry_if_transient

log = structlog.get_logger(__name__)

T = TypeVar("T")


class ClientIdInUseError(BrokerError):
    """IB Gateway refused the connection: another one with the same client id is open (error 326)."""


CLIENT_ID_IN_USE = 326
CONNECT_MESSAGES = 1  # START_API


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ClientIdInUseError) or retry_if_transient.predicate(exc)


async def _open_api(ib: IB, host: str, port: int, client_id: int, seconds: float) -> None:
    """The API session alone (the module doc says why not `IB.connectAsync`)."""
    ib.wrapper.clientId = client_id
    try:
        await ib.client.connectAsync(host, port, client_id, seconds)  # type: ignore[no-untyped-call]
    except BaseException:
        ib.disconnect()
        raise
    if client_id == 0:
        ib.reqAutoOpenOrders(True)  # as ib_async does: client 0 binds orders entered in TWS


class IbkrConnection:
    """Owns the `IB` client; `client()` returns a connected one or raises `BrokerError`."""

    def __init__(
        self,
        settings: IbkrSettings,
        ib_factory: Callable[[], IB] = IB,
        *,
        client_id: int | None = None,
        purpose: str = "reads",
        gateway: GatewayStatus | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway if gateway is not None else GatewayStatus()
        self.fixed_client_id = client_id if client_id is not None else settings.client_id
        self.purpose = purpose
        self._ib_factory = ib_factory
        self._ib: IB | None = None
        self._lock = asyncio.Lock()
        self._was_connected = False
        self.generation = 0  # counts connections made; an order belongs to the one it was placed on
        self.market_data_type: int | None = None  # the last reqMarketDataType sent on this connection
        # Messages promised to snapshots and not sent yet (their requests, then their cancels): a
        # batch placed here spends this room later, so the next batch does not count on it.
        self.promised = 0
        self.open_orders = SharedRequest[list[Trade]]()
        self.current_time = SharedRequest[datetime]()

    @property
    def endpoint(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port()}"

    def is_connected(self) -> bool:
        return self._ib is not None and self._ib.isConnected()

    def send_room(self) -> int:
        """Messages this connection could send now without waiting for its pacing (ibkr_pacing),
        less those promised to snapshots already placed on it."""
        if self._ib is None or not self._ib.isConnected():
            return MESSAGES_PER_WINDOW - CONNECT_MESSAGES - self.promised
        return send_room(self._ib) - self.promised

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
            self._ib = await self._reach()
            self._was_connected = True
            self.generation += 1
            self.market_data_type = None
            return self._ib

    async def close(self) -> None:
        async with self._lock:
            if self._ib is not None:
                self._ib.disconnect()
                self._ib = None
            self._was_connected = False

    def _client_id(self) -> int:
        s = self.settings
        if self.fixed_client_id is not None:
            return self.fixed_client_id
        low, high = sorted((s.client_id_min, s.client_id_max))
        return low + secrets.randbelow(high - low + 1)

    async def _reach(self) -> IB:
        """Connect, and tell the gateway status how it went."""
        try:
            ib = await self._connect()
        except ClientIdInUseError:
            raise  # the gateway answered: it is reachable
        except BrokerError as exc:
            self.gateway.unreachable(str(exc))
            raise
        self.gateway.connected()
        return ib

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
            # refused, reset, timed out: the gateway may be starting; an id in use may be freed soon
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(attempt.retry_state.attempt_number)
        except ClientIdInUseError as exc:
            raise ClientIdInUseError(
                f"{exc} after {s.connect_attempts} attempt(s): another connection with this client id is "
                "still open at the gateway (a processor still running, or a session the gateway has not "
                "dropped yet); the event retries"
            ) from exc
        except OSError as exc:
            raise BrokerError(
                f"cannot connect to IB Gateway at {self.endpoint} ({s.trading_mode} mode) after "
                f"{s.connect_attempts} attempt(s): {exc!r}; is the gateway running and logged in?"
            ) from exc
        raise BrokerError(f"cannot connect to IB Gateway at {self.endpoint}")  # pragma: no cover

    async def _attempt(self, number: int) -> IB:
        ib = self._ib_factory()
        client_id = self._client_id()
        log.info(
            "connecting to IB Gateway",
            endpoint=self.endpoint,
            client_id=client_id,
            purpose=self.purpose,
            attempt=number,
        )
        s = self.settings
        in_use = asyncio.Event()

        def on_error(req_id: int, code: int, message: str, contract: object) -> None:
            if code == CLIENT_ID_IN_USE:
                in_use.set()

        ib.errorEvent += on_error
        try:
            connect = asyncio.ensure_future(
                _open_api(ib, s.host, s.effective_port(), client_id, s.connect_timeout_seconds)
            )
            refused = asyncio.ensure_future(in_use.wait())
            await asyncio.wait({connect, refused}, return_when=asyncio.FIRST_COMPLETED)
            refused.cancel()
            if in_use.is_set():
                connect.cancel()
                with suppress(BaseException):
                    await connect
                ib.disconnect()
                raise ClientIdInUseError(
                    f"IB Gateway at {self.endpoint}: client id {client_id} is already in use"
                )
            await connect
        finally:
            ib.errorEvent -= on_error
        log.info(
            "connected to IB Gateway",
            endpoint=self.endpoint,
            client_id=client_id,
            purpose=self.purpose,
            mode=s.trading_mode,
        )
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
