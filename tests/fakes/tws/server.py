"""A loopback IB Gateway: speaks the TWS socket protocol (server version 178) to the real ib_async.

    fake = FakeTws(state)          # TwsState: accounts, quotes, order book, knobs
    await fake.start()             # 127.0.0.1, port 0 -> an ephemeral port, see fake.port
    ib = IB(); await ib.connectAsync("127.0.0.1", fake.port, clientId=7)
    ...; fake.state.received_orders; await fake.stop()

It answers what `IB.connectAsync` waits on (positions, open and completed orders, account updates,
account updates multi, executions), contract details, market data snapshots, account summaries,
placeOrder (open order, order status, execution, commission report; fills move shares and cash),
cancelOrder, reqAllOpenOrders, reqGlobalCancel and reqExecutions (the day's executions, executions.py).
The knobs on `TwsState` add latency, partial fills, rejections, cancels that never confirm and a
connection dropped on the N-th order.

By default it is as strict as a real gateway: market data lines (error 101), snapshots that end 11 s
later, delayed ticks and timestamps, rejections (201) and fractional-size refusals (10243), and
pacing (error 100). README.md lists each habit, its knob and the IB document behind it.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import structlog

from tests.fakes.tws import messages as msg
from tests.fakes.tws.account import FakeOrder, ReceivedCancel, ReceivedOrder, ServedRequest, TwsState, now
from tests.fakes.tws.executions import ExecutionQuery, trade_log_start
from tests.fakes.tws.limits import MAX_TICKERS_TEXT, PACING_TEXT, MarketDataLines, Pacer
from tests.fakes.tws.market_hours import NEW_YORK, MarketCalendar

log = structlog.get_logger(__name__)
CALENDAR = MarketCalendar()

_LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "close": 9, "last_timestamp": 45}
_DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "close": 75, "last_timestamp": 88}
_SIZES = {"bid": 100.0, "ask": 100.0, "last": 10.0, "close": 0.0}
# IB's message codes ("TWS API: Message Codes"); the status the order ends in after each rejection.
_FRACTIONAL_TEXT = (
    "Fractional-sized order cannot be placed via API. Please use desktop version to place this order."
)
_REJECTED_STATUS = {201: "Inactive", 10243: "Cancelled"}
_NO_DEFINITION = "No security definition has been found for the request"


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
        self._sessions: set[_Session] = set()
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
        self._server = await asyncio.start_server(self._accept, self.host, self._port)

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
        """Broadcast a filled listing's position once positions show the fill (after the lag)."""

        async def later() -> None:
            await asyncio.sleep(self.state.position_lag_seconds)
            account = self.state.accounts[account_id]
            shown = dict(self.state.reported_positions(account))
            held = shown.get(key) or self.state.listing(key)  # quantity 0: no longer held
            self.broadcast(msg.position(account_id, self.state.con_id(key), held))

        self.spawn(later())

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def sessions_for(self, client_id: int) -> list[_Session]:
        """Sessions that see an order of `client_id`: its own and those of client 0 / the master."""
        masters = {0} if self.state.master_client_id is None else {0, self.state.master_client_id}
        return [s for s in self._sessions if s.client_id == client_id or s.client_id in masters]

    def broadcast(self, data: bytes) -> None:
        for session in list(self._sessions):
            session.send(data)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        self._sessions.add(session)
        current = asyncio.current_task()
        if current is not None:
            self._session_tasks.add(current)
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
            self._session_tasks.discard(current)
            session.close()


class _Session:
    """One client connection: handshake, then one handler per request message id."""

    def __init__(self, server: FakeTws, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.state = server.state
        self.reader = reader
        self.writer = writer
        self.client_id: int | None = None
        self.market_data_type = 1
        self.pacer = Pacer(server.state)
        self.handlers: dict[int, Callable[[list[str]], None]] = {
            71: self._start_api,
            61: self._positions,
            5: self._open_orders,
            16: self._all_open_orders,
            99: lambda _: self.send(msg.completed_orders_end()),
            6: self._account_updates,
            76: self._account_updates_multi,
            62: self._account_summary,
            7: self._executions,
            9: self._contract_details,
            59: self._market_data_type,
            1: self._market_data,
            2: self._cancel_market_data,
            3: self._place_order,
            4: self._cancel_order,
            58: self._global_cancel,
            8: lambda _: self.send(msg.next_valid_id(self.state.next_order_id)),
            17: lambda _: self.send(msg.managed_accounts(list(self.state.accounts))),
            49: lambda _: self.send(msg.frame([49, 1, int(self.state.market_time)])),
        }

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    async def _read_frame(self) -> list[str]:
        header = await self.reader.readexactly(4)
        length = int.from_bytes(header, "big")
        return msg.split_fields(await self.reader.readexactly(length))

    async def run(self) -> None:
        prefix = await self.reader.readexactly(4)
        if prefix != b"API\0":
            raise ConnectionError(f"not an API client: {prefix!r}")
        await self._read_frame()  # "v157..178": we answer with the one version we speak
        self.send(msg.handshake_reply())
        while True:
            fields = await self._read_frame()
            arrived = now()
            if not self.pacer.admit(time.monotonic()):
                # Over the rate: refused unprocessed, as a real gateway does (error 100, request id -1).
                self.state.paced_out.append(int(fields[0]))
                self.send(msg.error(-1, 100, PACING_TEXT))
                await self.writer.drain()
                continue
            if self.state.latency_seconds > 0:
                await asyncio.sleep(self.state.latency_seconds)
            handler = self.handlers.get(int(fields[0]))
            if handler is not None:
                handler(fields)
            await self.writer.drain()
            self.server.served.append(ServedRequest(self.client_id or 0, int(fields[0]), arrived, now()))

    # --- connection and account -------------------------------------------------------------------

    def _start_api(self, fields: list[str]) -> None:
        client_id = int(fields[2])
        if client_id in self.server.connected_client_ids:
            # TWS API: a client id can be connected once; the second connection is refused.
            self.send(
                msg.error(
                    -1,
                    326,
                    "Unable to connect as the client id is already in use. Retry with a unique client id.",
                )
            )
            self.close()
            return
        self.client_id = client_id
        self.send(msg.next_valid_id(self.state.next_order_id))
        self.send(msg.managed_accounts(list(self.state.accounts)))

    def _positions(self, _fields: list[str]) -> None:
        # IB may send one conId more than once in one answer; copies go out as whole rounds.
        rows = [
            msg.position(account.account_id, self.state.con_id(key), held)
            for account in self.state.accounts.values()
            for key, held in self.state.reported_positions(account)
        ]
        for _ in range(max(self.state.position_copies, 1)):
            for row in rows:
                self.send(row)
        self.send(msg.position_end())

    def _summary_values(self, account_id: str) -> list[tuple[str, str, str]]:
        """(tag, value, currency) of the summary tags: amounts in the account's base currency; the
        day-trade counts have no currency."""
        account = self.state.accounts[account_id]
        base = account.base_currency
        return [
            ("NetLiquidation", repr(self.state.net_liquidation(account)), base),
            ("TotalCashValue", repr(self.state.total_cash(account)), base),
            *((tag, value, "") for tag, value in account.day_trade_values()),
        ]

    def _update_values(self, account_id: str) -> list[tuple[str, str, str]]:
        """Account updates add the cash of each currency and its rate to the base ("BASE" is the sum)."""
        account = self.state.accounts[account_id]
        values = self._summary_values(account_id)
        currencies = {*account.cash_balances(), *(p.currency for p in account.positions.values())}
        for currency in sorted(currencies):
            if currency in account.cash_balances():
                values.append(("CashBalance", repr(account.cash_balances()[currency]), currency))
            rate = self.state.to_base(account, 1.0, currency)
            values.append(("ExchangeRate", repr(rate), currency))
        values.append(("CashBalance", repr(self.state.total_cash(account)), "BASE"))
        values.append(("ExchangeRate", "1.00", "BASE"))
        return values

    def _account_updates(self, fields: list[str]) -> None:
        subscribe, account_id = fields[2], fields[3]
        if subscribe != "1" or account_id not in self.state.accounts:
            return
        for tag, value, currency in self._update_values(account_id):
            self.send(msg.account_value(tag, value, currency, account_id))
        self.send(msg.account_time("09:30"))
        self.send(msg.account_download_end(account_id))

    def _account_updates_multi(self, fields: list[str]) -> None:
        req_id, account_id = int(fields[2]), fields[3]
        for known in self.state.accounts:
            if account_id in ("", known):
                for tag, value, currency in self._update_values(known):
                    self.send(msg.account_update_multi(req_id, known, tag, value, currency))
        self.send(msg.account_update_multi_end(req_id))

    def _account_summary(self, fields: list[str]) -> None:
        req_id, tags = int(fields[2]), set(fields[4].split(","))
        for account_id in self.state.accounts:
            for tag, value, currency in self._summary_values(account_id):
                if tag in tags:
                    self.send(msg.account_summary(req_id, account_id, tag, value, currency))
        self.send(msg.account_summary_end(req_id))

    def _executions(self, fields: list[str]) -> None:
        """The trade log's executions this client may see that match the filter, each with its
        commission report, then the end (executions.py)."""
        query = ExecutionQuery.from_fields(fields)
        client_id = self.client_id or 0
        start = trade_log_start(self.state.market_time, self.state.execution_days)
        for record in list(self.state.fills):
            visible = record.client_id == client_id or self.state.sees_every_client(client_id)
            if visible and record.executed_at >= start and query.matches(record):
                self.send(msg.execution(query.req_id, record, self.state.con_id(record.symbol)))
                self.send(msg.commission_report(record.exec_id, self.state.commission_per_order))
        self.send(msg.executions_end(query.req_id))

    # --- contracts and market data ----------------------------------------------------------------

    def _contract_details(self, fields: list[str]) -> None:
        # conId, symbol, secType, ..., exchange, primaryExchange, currency: a conId names one listing;
        # else symbol and currency do (Stock("SHEL", "SMART", "USD") is the NYSE ADR, not the LSE line).
        req_id, con_id = int(fields[2]), int(fields[3] or 0)
        symbol, exchange, currency = fields[4], fields[10], fields[12]
        key = (
            self.state.key_for_con_id(con_id)
            if con_id
            else self.state.find_listing(symbol, currency, exchange)
        )
        if key is None:
            self.send(msg.error(req_id, 200, _NO_DEFINITION))
            return
        moment = datetime.fromtimestamp(self.state.market_time, NEW_YORK)
        self.send(
            msg.contract_details(
                req_id,
                self.state.con_id(key),
                self.state.listing(key),
                trading_hours=CALENDAR.hours(moment, extended=True),
                liquid_hours=CALENDAR.hours(moment, extended=False),
            )
        )
        self.send(msg.contract_details_end(req_id))

    def _market_data_type(self, fields: list[str]) -> None:
        self.market_data_type = int(fields[2])

    def _market_data(self, fields: list[str]) -> None:
        # [1, 11, reqId, 12 contract fields, deltaNeutral, genericTicks, snapshot, regulatory, options]
        req_id, symbol, snapshot = int(fields[2]), fields[4], fields[-3] == "1"
        quote = self.state.quotes.get(symbol)
        if quote is not None and quote.data_type > self.market_data_type:
            self.send(msg.error(req_id, 354, "Requested market data is not subscribed."))
            return
        if not self.server.lines.take(self, req_id):
            self.state.market_data_refusals.append(symbol)
            self.send(msg.error(req_id, 101, MAX_TICKERS_TEXT))
            return
        if quote is not None:
            ticks = _DELAYED_TICKS if quote.data_type == 3 else _LIVE_TICKS
            self.send(msg.market_data_type(req_id, quote.data_type))
            for name in ("bid", "ask", "last", "close"):
                price = getattr(quote, name)
                if price is not None:
                    self.send(msg.tick_price(req_id, ticks[name], price, _SIZES[name]))
            if quote.last is not None:
                self.send(msg.tick_string(req_id, ticks["last_timestamp"], str(quote.last_time(now()))))
        if snapshot:
            self.server.spawn(self._end_snapshot(req_id))

    async def _end_snapshot(self, req_id: int) -> None:
        # IB sends what it has at once and ends the snapshot 11 s later; the line is held till then.
        await asyncio.sleep(self.state.snapshot_seconds)
        if self.server.lines.release(self, req_id):
            self.send(msg.tick_snapshot_end(req_id))

    def _cancel_market_data(self, fields: list[str]) -> None:
        self.server.lines.release(self, int(fields[2]))

    # --- orders -----------------------------------------------------------------------------------

    def _send_order(self, order: FakeOrder) -> None:
        con_id = self.state.con_id(order.symbol)
        for session in self.server.sessions_for(order.client_id):
            session.send(msg.open_order(order, con_id))
            session.send(msg.order_status(order))

    def _open_orders(self, _fields: list[str]) -> None:
        for order in self.state.orders_for(self.client_id or 0):
            self.send(msg.open_order(order, self.state.con_id(order.symbol)))
            self.send(msg.order_status(order))
        self.send(msg.open_order_end())

    def _all_open_orders(self, _fields: list[str]) -> None:
        for order in self.state.open_orders:
            self.send(msg.open_order(order, self.state.con_id(order.symbol)))
            self.send(msg.order_status(order))
        self.send(msg.open_order_end())

    def _received(self, fields: list[str]) -> ReceivedOrder:
        limit = float(fields[19]) if fields[19] else None
        account = fields[23] or next(iter(self.state.accounts), "")
        return ReceivedOrder(
            client_id=self.client_id or 0,
            order_id=int(fields[1]),
            account=account,
            symbol=fields[3],
            action=fields[16],
            quantity=float(fields[17]),
            order_type=fields[18],
            limit_price=limit,
            time_in_force=fields[21],
            outside_rth=fields[33] == "1",
            order_ref=fields[26],
            received_at=now(),
            fields=fields,
            con_id=int(fields[2] or 0),
        )

    def _place_order(self, fields: list[str]) -> None:
        received = self._received(fields)
        self.state.received_orders.append(received)
        self.server.changed()
        if self.state.drop_on_order == len(self.state.received_orders):
            self.close()
            return
        key = self._order_listing(received)
        if key is None:
            self.send(msg.error(received.order_id, 200, _NO_DEFINITION))
            return
        rejection = self._rejection(received)
        if rejection is not None:
            self._reject(received, *rejection)
            return
        order = FakeOrder(
            client_id=received.client_id,
            order_id=received.order_id,
            perm_id=self.state.take_perm_id(),
            account=received.account,
            symbol=key,
            action="BUY" if received.action == "BUY" else "SELL",
            quantity=received.quantity,
            order_type=received.order_type,
            limit_price=received.limit_price,
            time_in_force=received.time_in_force,
            outside_rth=received.outside_rth,
            order_ref=received.order_ref,
        )
        self.state.next_order_id = max(self.state.next_order_id, order.order_id + 1)
        self.state.open_orders.append(order)
        if not self.server.may_execute(order):
            # IB holds a market order outside regular hours (and any order outside its session).
            order.status = "PreSubmitted"
            opens = CALENDAR.next_open(datetime.fromtimestamp(self.state.market_time, NEW_YORK))
            text = (
                f"Order Message:\n{order.action} {order.quantity:g} {order.symbol} NASDAQ.NMS\nWarning: your "
                f"order will not be placed at the exchange until {opens:%Y-%m-%d %H:%M:%S} US/Eastern"
            )
            self.send(msg.error(order.order_id, 399, text))
            self._send_order(order)
            return
        self._send_order(order)
        self.server.spawn(self.server.fill_later(order))

    def _rejection(self, received: ReceivedOrder) -> tuple[int, str] | None:
        reason = self.state.rejections.get(received.symbol)
        if received.account not in self.state.accounts:
            reason = f"account {received.account!r} is not managed by this login"
        if reason is not None:
            return 201, f"Order rejected - reason:{reason}"
        if not self.state.fractional_orders and not float(received.quantity).is_integer():
            return 10243, _FRACTIONAL_TEXT
        return None

    def _reject(self, received: ReceivedOrder, code: int, text: str) -> None:
        """The error, then the order's last status; it never enters the book."""
        self.send(msg.error(received.order_id, code, text))
        order = FakeOrder(
            client_id=received.client_id,
            order_id=received.order_id,
            perm_id=self.state.take_perm_id(),
            account=received.account,
            symbol=received.symbol,
            action="BUY" if received.action == "BUY" else "SELL",
            quantity=received.quantity,
            status=_REJECTED_STATUS[code],
        )
        self.state.next_order_id = max(self.state.next_order_id, order.order_id + 1)
        self.send(msg.order_status(order))

    def _order_listing(self, received: ReceivedOrder) -> str | None:
        """The listing an order trades: its conId's when it has one, else the symbol's in its currency."""
        if received.con_id:
            return self.state.key_for_con_id(received.con_id)
        fields = received.fields
        return self.state.find_listing(received.symbol, fields[11], fields[9])

    def _cancel_order(self, fields: list[str]) -> None:
        order_id = int(fields[2])
        self.state.cancels.append(ReceivedCancel(self.client_id or 0, order_id, now()))
        self.server.changed()
        order = self.state.find_cancellable(self.client_id or 0, order_id)
        if order is None:
            self.send(
                msg.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            )
            return
        self._confirm_cancel(order)

    def _confirm_cancel(self, order: FakeOrder) -> None:
        if not self.state.confirm_cancels:
            return
        self.state.open_orders.remove(order)
        order.status = "Cancelled"
        for session in self.server.sessions_for(order.client_id):
            session.send(msg.order_status(order))
        self.server.changed()

    def _global_cancel(self, _fields: list[str]) -> None:
        for order in list(self.state.open_orders):
            self.state.cancels.append(ReceivedCancel(self.client_id or 0, order.order_id, now()))
            self._confirm_cancel(order)


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
