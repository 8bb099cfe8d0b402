"""One client connection of the fake gateway: handshake, pacing, the network's round trip, and the
handlers of every request but orders (orders.py).

The round trip (`TwsState.round_trip_seconds`): each message is answered that long after it arrived,
and the connection keeps reading meanwhile, so requests of one connection are in flight together
(pipelined, as over a real network) and answered in the order they came. Pacing is counted when a
message reaches the socket, as the gateway counts it (the kernel's receive time, wire.py); one over
the limit is answered with error 100 (after the round trip, as any answer) and not processed.

At most `TwsState.max_connections` API clients (IB: 32 per TWS / IB Gateway) are served at once. IB's
documents state the ceiling but not what a client beyond it is told; the model here: the socket is
accepted and the handshake answered, but the client's START_API gets no answer at all, so its connect
times out, and the refusal is recorded in `TwsState.connection_refusals`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from tests.fakes.tws import messages as msg
from tests.fakes.tws.account import FakePosition, FakeQuote, ServedRequest, now
from tests.fakes.tws.executions import ExecutionQuery, trade_log_start
from tests.fakes.tws.limits import MAX_TICKERS_TEXT, PACING_TEXT, Pacer
from tests.fakes.tws.market_hours import NEW_YORK, MarketCalendar
from tests.fakes.tws.orders import NO_DEFINITION, OrderDesk
from tests.fakes.tws.wire import Wire

if TYPE_CHECKING:
    from tests.fakes.tws.server import FakeTws

CALENDAR = MarketCalendar()
_LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "close": 9, "last_timestamp": 45}
_DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "close": 75, "last_timestamp": 88}
_SIZES = {"bid": 100.0, "ask": 100.0, "last": 10.0, "close": 0.0}
# TWS API docs, "Account Summary": "only two active summary subscriptions are allowed at a time"; the
# third is refused with error 322 until one is cancelled.
ACTIVE_ACCOUNT_SUMMARIES = 2
SUMMARY_LIMIT_TEXT = (
    "Error processing request.-'bc' : cause - Maximum number of account summary requests exceeded; "
    "desubscribe to previous request first"
)
CLIENT_ID_IN_USE_TEXT = "Unable to connect as the client id is already in use. Retry with a unique client id."


class Session:
    """One client connection: handshake, then one handler per request message id."""

    def __init__(self, server: FakeTws, wire: Wire) -> None:
        self.server = server
        self.state = server.state
        self.wire = wire
        self.client_id: int | None = None
        self.market_data_type = 1
        # Position subscriptions: reqPositions (every account) until cancelPositions; reqPositionsMulti
        # (request id -> account, "" for all) until cancelPositionsMulti.
        self.positions_subscribed = False
        self.position_subscriptions: dict[int, str] = {}
        self.account_summaries: set[int] = set()  # request ids of active reqAccountSummary subscriptions
        self.pacer = Pacer(server.state)
        # (due time, fields, admitted by the pacer) in arrival order; answered by `_deliver`.
        self._inbox: asyncio.Queue[tuple[float, list[str], bool, float]] = asyncio.Queue()
        orders = OrderDesk(self)
        self.handlers: dict[int, Callable[[list[str]], None]] = {
            71: self._start_api,
            61: self._positions,
            64: self._cancel_positions,
            74: self._positions_multi,
            75: self._cancel_positions_multi,
            5: orders.open_orders,
            16: orders.all_open_orders,
            99: lambda _: self.send(msg.completed_orders_end()),
            6: self._account_updates,
            76: self._account_updates_multi,
            77: lambda _: None,  # cancelAccountUpdatesMulti: the fake streams no later account updates
            62: self._account_summary,
            63: lambda fields: self.account_summaries.discard(int(fields[2])),
            7: self._executions,
            9: self._contract_details,
            59: self._market_data_type,
            1: self._market_data,
            2: self._cancel_market_data,
            3: orders.place_order,
            4: orders.cancel_order,
            58: orders.global_cancel,
            8: lambda _: self.send(msg.next_valid_id(self.state.next_order_id)),
            17: lambda _: self.send(msg.managed_accounts(list(self.state.accounts))),
            49: lambda _: self.send(msg.frame([49, 1, int(self.state.market_time)])),
        }

    def send(self, data: bytes) -> None:
        self.wire.write(data)

    def close(self) -> None:
        self.wire.close()

    async def _read_frame(self) -> tuple[list[str], float]:
        """The next message, and the (wall clock) time its last byte reached the socket."""
        header, _ = await self.wire.readexactly(4)
        body, received = await self.wire.readexactly(int.from_bytes(header, "big"))
        return msg.split_fields(body), received

    async def run(self) -> None:
        prefix, _ = await self.wire.readexactly(4)
        if prefix != b"API\0":
            raise ConnectionError(f"not an API client: {prefix!r}")
        await self._read_frame()  # "v157..178": we answer with the one version we speak
        await asyncio.sleep(self.state.round_trip_seconds)
        self.send(msg.handshake_reply())
        reading = asyncio.ensure_future(self._read())
        delivering = asyncio.ensure_future(self._deliver())
        try:
            done, _ = await asyncio.wait({reading, delivering}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the socket's end, or a handler's failure
        finally:
            for task in (reading, delivering):
                task.cancel()
            await asyncio.gather(reading, delivering, return_exceptions=True)

    async def _read(self) -> None:
        """Take every message as it arrives: count it against the pacing limit now, answer it later."""
        loop = asyncio.get_running_loop()
        while True:
            fields, received = await self._read_frame()
            arrived = loop.time()
            wall_arrived = now()
            admitted = self.pacer.admit(received)
            key = self.client_id if self.client_id is not None else -1
            self.state.messages_received[key] = self.state.messages_received.get(key, 0) + 1
            self._inbox.put_nowait((arrived + self.state.round_trip_seconds, fields, admitted, wall_arrived))
            self.state.most_in_flight = max(self.state.most_in_flight, self._inbox.qsize())

    async def _deliver(self) -> None:
        """Answer the messages in the order they came, each once its round trip has passed."""
        loop = asyncio.get_running_loop()
        while True:
            due, fields, admitted, wall_arrived = await self._inbox.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if admitted:
                handler = self.handlers.get(int(fields[0]))
                if handler is not None:
                    handler(fields)
            else:
                # Over the rate: refused unprocessed, as a real gateway does (error 100, request id -1).
                self.state.paced_out.append(int(fields[0]))
                self.send(msg.error(-1, 100, PACING_TEXT))
            await self.wire.drain()
            served = ServedRequest(self.client_id or 0, int(fields[0]), wall_arrived, now())
            self.server.served.append(served)

    # --- connection and account -------------------------------------------------------------------

    def _start_api(self, fields: list[str]) -> None:
        client_id = int(fields[2])
        connected = self.server.connected_client_ids
        if client_id in connected:
            # TWS API: a client id can be connected once; the second connection is refused.
            self.send(msg.error(-1, 326, CLIENT_ID_IN_USE_TEXT))
            self.close()
            return
        limit = self.state.max_connections
        if limit is not None and len(connected) >= limit:
            self.state.connection_refusals.append(client_id)  # no answer: the client's connect times out
            return
        self.client_id = client_id
        self.state.peak_connections = max(self.state.peak_connections, len(connected) + 1)
        self.send(msg.next_valid_id(self.state.next_order_id))
        self.send(msg.managed_accounts(list(self.state.accounts)))

    def _positions(self, _fields: list[str]) -> None:
        # IB may send one conId more than once in one answer; copies go out as whole rounds.
        self.positions_subscribed = True
        rows = [
            msg.position(account.account_id, self.state.con_id(key), held)
            for account in self.state.accounts.values()
            for key, held in self.state.reported_positions(account)
        ]
        for _ in range(max(self.state.position_copies, 1)):
            for row in rows:
                self.send(row)
        self.send(msg.position_end())

    def _cancel_positions(self, _fields: list[str]) -> None:
        self.positions_subscribed = False

    def _positions_multi(self, fields: list[str]) -> None:
        """One account's positions (every account's for ""), with the same habits as reqPositions:
        rows repeated as whole rounds, fills shown after the lag; then updates until cancelled."""
        req_id, wanted = int(fields[2]), fields[3]
        self.position_subscriptions[req_id] = wanted
        rows = [
            msg.position_multi(req_id, account.account_id, self.state.con_id(key), held)
            for account in self.state.accounts.values()
            if wanted in ("", account.account_id)
            for key, held in self.state.reported_positions(account)
        ]
        for _ in range(max(self.state.position_copies, 1)):
            for row in rows:
                self.send(row)
        self.send(msg.position_multi_end(req_id))

    def _cancel_positions_multi(self, fields: list[str]) -> None:
        self.position_subscriptions.pop(int(fields[2]), None)

    def position_update(self, account_id: str, con_id: int, held: FakePosition) -> None:
        """A position changed: streamed to this connection's subscriptions that cover the account."""
        if self.positions_subscribed:
            self.send(msg.position(account_id, con_id, held))
        for req_id, wanted in self.position_subscriptions.items():
            if wanted in ("", account_id):
                self.send(msg.position_multi(req_id, account_id, con_id, held))

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
        if len(self.account_summaries) >= ACTIVE_ACCOUNT_SUMMARIES:
            self.state.summary_refusals.append(req_id)
            self.send(msg.error(req_id, 322, SUMMARY_LIMIT_TEXT))
            return
        self.account_summaries.add(req_id)
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
            self.send(msg.error(req_id, 200, NO_DEFINITION))
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
        if not snapshot:
            self._send_ticks(req_id, quote)
        elif self.state.snapshot_data_seconds <= 0:
            self._send_ticks(req_id, quote)
            self.server.spawn(self._end_snapshot(req_id, self.state.snapshot_seconds))
        else:
            self.server.spawn(self._snapshot_later(req_id, quote))

    def _send_ticks(self, req_id: int, quote: FakeQuote | None) -> None:
        if quote is None:
            return  # no data at all: the snapshot ends with no price
        ticks = _DELAYED_TICKS if quote.data_type == 3 else _LIVE_TICKS
        self.send(msg.market_data_type(req_id, quote.data_type))
        for name in ("bid", "ask", "last", "close"):
            price = getattr(quote, name)
            if price is not None:
                self.send(msg.tick_price(req_id, ticks[name], price, _SIZES[name]))
        if quote.last is not None:
            self.send(msg.tick_string(req_id, ticks["last_timestamp"], str(quote.last_time(now()))))

    async def _snapshot_later(self, req_id: int, quote: FakeQuote | None) -> None:
        """The snapshot's data after `snapshot_data_seconds` (unless cancelled by then), then its end."""
        data_after = min(self.state.snapshot_data_seconds, self.state.snapshot_seconds)
        await asyncio.sleep(data_after)
        if self.server.lines.holds(self, req_id):
            self._send_ticks(req_id, quote)
        await self._end_snapshot(req_id, self.state.snapshot_seconds - data_after)

    async def _end_snapshot(self, req_id: int, after: float) -> None:
        # IB ends a snapshot once it has what there is (at most 11 s); the line is held till then.
        await asyncio.sleep(after)
        if self.server.lines.release(self, req_id):
            self.send(msg.tick_snapshot_end(req_id))

    def _cancel_market_data(self, fields: list[str]) -> None:
        self.server.lines.release(self, int(fields[2]))
