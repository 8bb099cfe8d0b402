"""A loopback IB Gateway: speaks the TWS socket protocol (server version 178) to the real ib_async.

    fake = FakeTws(state)          # TwsState: accounts, quotes, order book, knobs
    await fake.start()             # 127.0.0.1, port 0 -> an ephemeral port, see fake.port
    ib = IB(); await ib.connectAsync("127.0.0.1", fake.port, clientId=7)
    ...; fake.state.received_orders; await fake.stop()

It answers what `IB.connectAsync` waits on (positions, open and completed orders, account updates,
account updates multi, executions), contract details, market data snapshots, account summaries,
placeOrder (open order, order status, execution, commission report; fills move shares and cash),
cancelOrder, reqAllOpenOrders, reqGlobalCancel and reqExecutions (the day's executions, executions.py).
Each connection is a `Session` (session.py; its orders in orders.py). The knobs on `TwsState` add a
network's round trip (requests of one connection pipelined), snapshot and fill delays (profiles.py
names two sets), partial fills, rejections, cancels that never confirm and a connection dropped on
the N-th order.

By default it is as strict as a real gateway: market data lines (error 101), snapshots that end 11 s
later, delayed ticks and timestamps, rejections (201) and fractional-size refusals (10243), pacing
(error 100) and at most 32 API connections. README.md lists each habit, its knob and the IB document
behind it.

What a real gateway does with positions, contracts and currencies is on by default (README.md here):
every position is sent `position_copies` times per reqPositions answer (ib_insync #575); positions show
a fill `position_lag_seconds` after the cash does (ib_async #15); positions, contract details and orders
name a listing by conId with its exchange and currency (SHEL on the LSE is not the NYSE ADR); account
values are in the account's base currency, with CashBalance and ExchangeRate per currency.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import structlog

from tests.fakes.tws import messages as msg
from tests.fakes.tws.account import FakeOrder, ServedRequest, TwsState
from tests.fakes.tws.limits import MarketDataLines
from tests.fakes.tws.market_hours import NEW_YORK
from tests.fakes.tws.session import CALENDAR, Session
from tests.fakes.tws.wire import Wire

log = structlog.get_logger(__name__)


class FakeTws:
    """The server: accepts ib_async connections and serves them from one shared `TwsState`."""

    def __init__(
        self,
        state: TwsState | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_change: Callable[[TwsState], None] | None = None,
    ) -> None:
        self.state = state if state is not None else TwsState()
        self.host = host
        self._port = port
        self._on_change = on_change
        self._server: asyncio.Server | None = None
        self._sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_tasks: set[asyncio.Task[object]] = set()
        self.errors: list[str] = []
        self.served: list[ServedRequest] = []  # kept apart from the state: the state file stays small
        self.lines = MarketDataLines(self.state)

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connected_client_ids(self) -> list[int]:
        return sorted(s.client_id for s in self._sessions if s.client_id is not None)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Wire(self._open), self.host, self._port)

    def _open(self, wire: Wire) -> None:
        task = asyncio.ensure_future(self._accept(wire))
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    async def stop(self) -> None:
        self.drop_connections()
        tasks = [*self._tasks, *self._session_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> None:
        """Close every client socket at once, as a gateway restart would."""
        for session in list(self._sessions):
            session.close()

    def changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.state)

    # --- the market clock and fills -----------------------------------------------------------------

    def market_moment(self) -> datetime:
        return datetime.fromtimestamp(self.state.market_time, NEW_YORK)

    def next_open(self) -> datetime:
        """The next regular open after the gateway's clock."""
        return CALENDAR.next_open(self.market_moment())

    def may_execute(self, order: FakeOrder) -> bool:
        """Regular hours: any order; extended hours: a limit order with outsideRth; else held."""
        moment = self.market_moment()
        if CALENDAR.is_regular(moment):
            return True
        return CALENDAR.is_extended(moment) and order.outside_rth and order.order_type == "LMT"

    def set_market_time(self, moment: datetime) -> None:
        """Move the gateway's clock; held orders that may now execute are released to the market."""
        self.state.market_time = moment.timestamp()
        for order in list(self.state.open_orders):
            if order.status == "PreSubmitted" and self.may_execute(order):
                order.status = "Submitted"
                for session in self.sessions_for(order.client_id):
                    session.send(msg.order_status(order))
                self.spawn(self.fill_later(order))
        self.changed()

    async def fill_later(self, order: FakeOrder) -> None:
        if self.state.fill_delay_seconds > 0:
            await asyncio.sleep(self.state.fill_delay_seconds)
        if order not in self.state.open_orders:
            return
        quote = self.state.quotes.get(order.symbol)
        price = quote.fill_price(order.action) if quote is not None else None
        if price is None or not _limit_allows(order, price):
            return
        shares = order.quantity * self.state.partial_fills.get(order.symbol, 1.0)
        if float(order.quantity).is_integer():
            shares = math.floor(shares)
        if shares <= 0:
            return
        self.fill(order, shares, price)

    def fill(self, order: FakeOrder, shares: float, price: float) -> None:
        self.state.apply_fill(order, shares, price)
        record = self.state.fills[-1]
        if order.filled >= order.quantity:
            order.status = "Filled"
            self.state.open_orders.remove(order)
        con_id = self.state.con_id(order.symbol)
        for session in self.sessions_for(order.client_id):
            session.send(msg.execution(-1, record, con_id))
            session.send(msg.order_status(order))
            session.send(msg.commission_report(record.exec_id, self.state.commission_per_order))
        self.position_changed(order.account, order.symbol)
        self.changed()

    def position_changed(self, account_id: str, key: str) -> None:
        """Stream a filled listing's position, once positions show the fill (after the lag), to the
        connections subscribed to positions (reqPositions: every account's; reqPositionsMulti: the
        account's)."""

        async def later() -> None:
            await asyncio.sleep(self.state.position_lag_seconds)
            account = self.state.accounts[account_id]
            shown = dict(self.state.reported_positions(account))
            held = shown.get(key) or self.state.listing(key)  # quantity 0: no longer held
            for session in list(self._sessions):
                session.position_update(account_id, self.state.con_id(key), held)

        self.spawn(later())

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def sessions_for(self, client_id: int) -> list[Session]:
        """Sessions that see an order of `client_id`: its own and those of client 0 / the master."""
        masters = {0} if self.state.master_client_id is None else {0, self.state.master_client_id}
        return [s for s in self._sessions if s.client_id == client_id or s.client_id in masters]

    async def _accept(self, wire: Wire) -> None:
        session = Session(self, wire)
        self._sessions.add(session)
        try:
            await session.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # stop() cancels the handlers; ending quietly keeps asyncio from logging the cancellation.
            pass
        except Exception as exc:
            self.errors.append(repr(exc))
            log.exception("fake tws session failed")
        finally:
            self._sessions.discard(session)
            self.lines.release_all(session)
            session.close()


def _limit_allows(order: FakeOrder, price: float) -> bool:
    if order.order_type != "LMT" or order.limit_price is None:
        return True
    return price <= order.limit_price if order.action == "BUY" else price >= order.limit_price


@contextlib.asynccontextmanager
async def serve(state: TwsState | None = None) -> AsyncIterator[FakeTws]:
    """A started fake on an ephemeral port, stopped on exit."""
    fake = FakeTws(state)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
