"""`IbkrBroker`: the `Broker` protocol on ib_async's async API, against IB Gateway / TWS.

Identity: every position comes with its contract (conId, exchange, currency), once per conId (IB may
repeat a row in one answer; the last one wins). `get_listings` names each symbol's US listing
(SMART, USD): the contract every order and price request uses, so a holding of the same ticker on
another exchange is never traded through it. Account values come with their currency
(`ibkr_account_values`).

Day trades: `DayTradesRemaining` from the account's values; the day's executions from every connection
held for the account, the day by the gateway's clock in New York (`ibkr_executions`).

Prices: US stocks on SMART in USD, qualified once and cached. Each symbol is asked for with market
data type live (1), then frozen (2), then delayed (3), until its snapshot has a usable price
(`quotes.choose_price`: last, then mid, then close; never zero, negative, NaN, older than
`max_price_age_seconds` or a midpoint of a crossed or too wide spread). Snapshots go out in batches
under the process's market data lines (`ibkr_market_data`). A symbol that has no usable price after
all three is left out of the result and logged with why: the planner then refuses the plan with a
`PlanError` naming it, so nothing is ever traded on a bad price. A symbol IB does not know at all is
a `BrokerError`.

Orders: `order_tickets.order_ticket` decides type, limit, time in force and outsideRth; every order
carries `orderRef` = the event id and the account. IB's rejection of an order (error 201 with its
reason, 10243 for a fractional size, ...) becomes its result's `message`. A run's orders go out in
one burst (placeOrder does not wait for an answer); fills and cancels are waited for on ib_async's
order events, not on a polling tick.

Concurrency: nothing holds a lock across requests. Requests ib_async answers by request id (contract
details, market data, executions, account values and positions per account) are in flight together;
the few it answers under a fixed name (open orders, the gateway's time) go one at a time per connection,
shared by the callers that asked meanwhile (`ibkr_requests.SharedRequest`). A mutating run reads its
account (values, positions, listings, prices: the `account_id` the reads name) through its own
trading connection, so concurrent runs do not queue behind one connection's pacing; other reads go
through the process's reads connection.

Pacing: every connection's messages leave at most 48 in any 1.25 s (`ibkr_pacing`), under IB's 50 a
second. A live run's market data requests go through its trading connection and the reads
connection, each batch split by the room each has in its pacing window.

Client ids and connections (`ibkr_trading`): every mutating run of an account trades through a
connection of its own with the account's fixed trading client id, so any later attempt can cancel
what an earlier one left working; at most `ibkr.max_connections` connections per process. Reads use
one shared connection with `IB_CLIENT_ID` or a random id. An open order of the account with another
client id (placed by hand in TWS, by another program, or by a release before this scheme) cannot be
cancelled by us: the run stops and says so. Orders of other accounts, and FA group orders without
an account, are not ours.

Market hours. Before placing, the gateway's clock (reqCurrentTime) is held against the contract's
sessions (contract details' liquidHours and tradingHours, `sessions.py`): outside the regular session
a market order is not placed (IB would hold it until the open); with EXTENDED_HOURS_ENABLED in the
extended session a limit order with outsideRth goes instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from ib_async import IB, Contract, Order, Position, Stock, Trade

from event_processor.brokers.day_trades import trading_day
from event_processor.brokers.gateway_status import GatewayStatus
from event_processor.brokers.ibkr_account_values import (
    ACCOUNT_TAGS,
    DAY_TRADE_TAGS,
    account_updates,
    account_values,
    day_trades_remaining,
    updates_by_request,
)
from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.ibkr_executions import executions_on, positions_settle_in, utc_execution_times
from event_processor.brokers.ibkr_market_data import LinePool, SnapshotReader
from event_processor.brokers.ibkr_pacing import pace
from event_processor.brokers.ibkr_positions import (
    account_positions,
    broker_position,
    positions_by_request,
    watch_positions,
)
from event_processor.brokers.ibkr_requests import PositionChanges, wakeup_on, woken_or_timeout
from event_processor.brokers.ibkr_trades import (
    Placed,
    describe_open,
    open_order,
    order_result,
    uncancellable_message,
)
from event_processor.brokers.ibkr_trading import TradingConnections
from event_processor.brokers.models import (
    AccountValues,
    BrokerError,
    BrokerExecution,
    BrokerPosition,
    Listing,
    OpenOrder,
    OrderRequest,
    OrderResult,
    UncancellableOrdersError,
    UnknownSymbolError,
)
from event_processor.brokers.order_tickets import order_ticket
from event_processor.brokers.quotes import PriceRules, Quote, choose_price, price_problems
from event_processor.brokers.sessions import Session, market_hours
from rebalancer_shared.config import IbkrSettings, OrderSettings
from rebalancer_shared.failures import WaitForSession

log = structlog.get_logger(__name__)

MARKET_DATA_TYPES = (1, 2, 3)  # live, frozen, delayed
# Contract details asked for at once: each request waits `request_timeout_seconds`, and messages
# leave at the paced rate.
QUALIFY_BATCH = 40


def utc_now() -> datetime:
    return datetime.now(UTC)


def paced(ib: IB) -> IB:
    """`ib` with its request throttle under IB's pacing limit (ibkr_pacing.py), reading execution
    times in UTC (ibkr_executions.py), account values (ibkr_account_values.py) and positions
    (ibkr_positions.py) by request id."""
    return positions_by_request(updates_by_request(utc_execution_times(pace(ib))))


class MarketClosedError(BrokerError, WaitForSession):
    """Orders were not placed: the market is closed now (or only in extended hours, not enabled).

    `not_before`: IB's next regular open of the contract (the event is scheduled for it)."""

    def __init__(
        self, now: datetime, opens: datetime | None, session: Session, extended_enabled: bool
    ) -> None:
        self.now = now
        self.opens = opens
        local = now.astimezone(opens.tzinfo) if opens is not None else now
        when = f"; the next regular session opens {opens:%Y-%m-%d %H:%M %Z}" if opens else ""
        if session is Session.EXTENDED:
            why = "only the extended session is open and EXTENDED_HOURS_ENABLED is off"
        else:
            why = "the market is closed"
        super().__init__(
            f"no order placed: {why} (gateway time {local:%Y-%m-%d %H:%M %Z}{when}); IB would hold "
            "market orders until the open, so the event waits for the next session instead"
        )
        self.not_before = opens


async def _open_trades(connection: IbkrConnection, ib: IB, account_id: str) -> list[Trade]:
    """Open orders of exactly this account (FA group orders without an account are not its own)."""
    what = f"open orders of {account_id}"
    trades = await connection.open_orders.get(lambda: connection.request(what, ib.reqAllOpenOrdersAsync()))
    return [t for t in trades if t.order.account == account_id and not t.isDone()]


async def _gateway_time(connection: IbkrConnection, ib: IB) -> datetime:
    what = "the gateway's time"
    return await connection.current_time.get(lambda: connection.request(what, ib.reqCurrentTimeAsync()))


class IbkrBroker:
    """The real broker. One instance serves every account of the process: one reads connection, and
    a trading connection per account while its mutating run lasts."""

    def __init__(
        self,
        settings: IbkrSettings,
        orders: OrderSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        poll_interval_seconds: float = 0.1,
        ib_factory: Callable[[], IB] = IB,
        account_ids: Sequence[str] = (),
    ) -> None:
        self._settings = settings
        self._orders = orders
        self._clock = clock
        self._poll = poll_interval_seconds
        self._positions = PositionChanges()
        self.gateway = GatewayStatus()  # what every connection of this broker found (heartbeat)
        self._connection = IbkrConnection(
            settings, lambda: self._positions.watch(paced(ib_factory())), gateway=self.gateway
        )
        self._traders = TradingConnections(
            settings, lambda: self._positions.watch(paced(ib_factory())), account_ids, self.gateway
        )
        self._rules = PriceRules(settings.max_price_age_seconds, settings.max_spread_pct)
        lines = LinePool(settings.market_data_lines)
        self._snapshots = SnapshotReader(settings, lines, clock, poll_interval_seconds)
        self._contracts: dict[str, Contract] = {}
        self._quotes: dict[str, Quote] = {}
        # Order ids are unique per client id only: each account's trading client numbers its own.
        self._placed: dict[tuple[str, int], Placed] = {}

    async def close(self) -> None:
        await self._traders.close()
        await self._connection.close()

    def trading_client_id(self, account_id: str) -> int:
        """The fixed client id of the account's mutating runs."""
        return self._traders.client_id(account_id)

    async def reserve(self, account_id: str) -> None:
        """The account's mutating run begins: open its trading connection (waiting for a free one);
        the run's reads go through it from now on."""
        trader = await self._traders.open(account_id)
        await watch_positions(trader, account_id)  # its changes wake the waits for fills to show

    async def release(self, account_id: str) -> None:
        """The account's mutating run ended: close its trading connection."""
        await self._traders.release(account_id)

    def _quote_connections(self, account_id: str | None) -> list[IbkrConnection]:
        """Where an account's snapshots may go: the reads connection, and during the account's mutating
        run its trading connection too (each paced on its own; the reads connection first, so the
        trading connection keeps its room for the run's orders)."""
        held = self._traders.held(account_id) if account_id is not None else None
        return [self._connection, held] if held is not None else [self._connection]

    def _reads(self, account_id: str | None) -> IbkrConnection:
        """The connection an account's reads go through: its trading connection during its mutating
        run (each connection has its own pacing), else the shared reads connection."""
        held = self._traders.held(account_id) if account_id is not None else None
        return held if held is not None else self._connection

    # --- reads ------------------------------------------------------------------------------------

    async def get_account_values(self, account_id: str) -> AccountValues:
        values = await account_updates(self._reads(account_id), account_id, ACCOUNT_TAGS)
        return account_values(account_id, values)

    async def get_day_trades_remaining(self, account_id: str) -> int | None:
        values = await account_updates(self._reads(account_id), account_id, DAY_TRADE_TAGS)
        return day_trades_remaining(account_id, values)

    async def get_todays_executions(self, account_id: str) -> list[BrokerExecution]:
        executions, _ = await self._executions_and_time(account_id)
        return executions

    async def _executions_and_time(self, account_id: str) -> tuple[list[BrokerExecution], datetime]:
        ib = await self._connection.client()
        now = await _gateway_time(self._connection, ib)
        sources = [(self._connection, ib)]
        trader = self._traders.held(account_id)
        if (
            trader is not None
        ):  # the run's connection: it alone sees what earlier runs placed (a drop reconnects)
            sources.append((trader, await trader.client()))
        return await executions_on(sources, account_id, trading_day(now)), now

    async def _until_positions_show_fills(self, account_id: str) -> None:
        """Wait until the positions show every execution of the account so far (see
        `positions_settle_in`): an earlier run's order may have filled a moment ago."""
        executions, now = await self._executions_and_time(account_id)
        wait = positions_settle_in(executions, now, self._settings.position_lag_seconds)
        if wait > 0:
            log.info(
                "waiting for the positions to show a recent fill",
                account_id=account_id,
                seconds=round(wait, 2),
                newest_execution=max(e.time for e in executions).isoformat(),
            )
            await asyncio.sleep(wait)

    async def get_positions(self, account_id: str) -> list[BrokerPosition]:
        positions = await account_positions(self._reads(account_id), account_id)
        latest: dict[int, Position] = {}
        for position in positions:
            if position.account == account_id:
                latest[position.contract.conId] = position  # a repeated conId: the last row wins
        return [broker_position(p) for p in latest.values() if p.position != 0]

    async def wait_for_position_change(self, account_id: str, seconds: float) -> None:
        await self._positions.wait(account_id, seconds)

    async def get_listings(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, Listing]:
        known = await self._qualify_known(self._reads(account_id), list(dict.fromkeys(symbols)))
        return {
            symbol: Listing(symbol, int(c.conId), c.primaryExchange, c.currency)
            for symbol, c in known.items()
        }

    async def get_open_orders(self, account_id: str) -> list[OpenOrder]:
        ib = await self._connection.client()
        return [open_order(trade) for trade in await _open_trades(self._connection, ib, account_id)]

    async def get_prices(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, float]:
        connection = self._reads(account_id)
        wanted = list(dict.fromkeys(symbols))
        contracts: dict[str, Contract] = {}
        for start in range(0, len(wanted), QUALIFY_BATCH):  # each batch gets the request timeout
            contracts.update(await self._qualify(connection, wanted[start : start + QUALIFY_BATCH]))
        prices: dict[str, float] = {}
        for data_type in MARKET_DATA_TYPES:
            pending = {s: contracts[s] for s in wanted if s not in prices}
            if not pending:
                break
            quotes = await self._snapshots.quotes(self._quote_connections(account_id), pending, data_type)
            prices.update(self._usable(quotes, data_type))
        for symbol in wanted:
            if symbol not in prices:
                log.warning("no usable price for symbol after live, frozen and delayed data", symbol=symbol)
        return prices

    def _usable(self, quotes: dict[str, Quote], data_type: int) -> dict[str, float]:
        now = self._clock()
        usable: dict[str, float] = {}
        for symbol, quote in quotes.items():
            chosen = choose_price(quote, now, self._rules)
            if chosen is None:
                log.info(
                    "snapshot has no usable price",
                    symbol=symbol,
                    market_data_type=data_type,
                    problems=[p for p in price_problems(quote, now, self._rules) if p],
                    quote=quote,
                )
                continue
            self._quotes[symbol] = quote
            usable[symbol] = chosen.price
            log.debug(
                "price", symbol=symbol, price=chosen.price, source=chosen.source, market_data_type=data_type
            )
        return usable

    async def _qualify(self, connection: IbkrConnection, symbols: Sequence[str]) -> dict[str, Contract]:
        known = await self._qualify_known(connection, symbols)
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise UnknownSymbolError(
                f"IB does not know (or finds ambiguous) the US stock(s) {', '.join(unknown)} "
                "on SMART in USD; check the symbols of the allocation"
            )
        return known

    async def _qualify_known(self, connection: IbkrConnection, symbols: Sequence[str]) -> dict[str, Contract]:
        """The qualified US contract (conId filled in) of each symbol IB knows on SMART in USD."""
        missing = [s for s in symbols if s not in self._contracts]
        if missing:
            ib = await connection.client()
            fresh = [Stock(symbol, "SMART", "USD") for symbol in missing]
            results = await connection.request(
                f"contract details of {', '.join(missing)}", ib.qualifyContractsAsync(*fresh)
            )
            for symbol, contract, result in zip(missing, fresh, results, strict=True):
                if isinstance(result, Contract):
                    self._contracts[symbol] = contract
        return {s: self._contracts[s] for s in symbols if s in self._contracts}

    # --- writes -----------------------------------------------------------------------------------

    async def _session(self, connection: IbkrConnection, contract: Contract) -> Session:
        """The session now, by the gateway's clock and the contract's hours; raise if closed for us."""
        ib = await connection.client()
        what = f"trading hours of {contract.symbol}"
        details, now = await asyncio.gather(
            connection.request(what, ib.reqContractDetailsAsync(contract)), _gateway_time(connection, ib)
        )
        if not details:
            raise BrokerError(f"{what}: IB Gateway sent no contract details")
        first = details[0]
        hours = market_hours(first.liquidHours, first.tradingHours, first.timeZoneId)
        session = hours.session_at(now)
        extended_ok = session is Session.EXTENDED and self._orders.extended_hours_enabled
        if session is Session.REGULAR or extended_ok:
            return session
        raise MarketClosedError(
            now, hours.next_regular_open(now), session, self._orders.extended_hours_enabled
        )

    async def cancel_open_orders(self, account_id: str, timeout_seconds: float) -> list[OpenOrder]:
        trader = await self._traders.open(account_id)
        ib = await trader.client()
        own_id = self.trading_client_id(account_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        requested: dict[tuple[int, int, int], OpenOrder] = {}
        with wakeup_on(ib.orderStatusEvent) as changed:
            while True:
                still_open = await _open_trades(trader, ib, account_id)
                foreign = [t for t in still_open if int(t.order.clientId) != own_id]
                ours = [t for t in still_open if int(t.order.clientId) == own_id]
                if not still_open:
                    await self._until_positions_show_fills(account_id)
                    return list(requested.values())
                for trade in ours:
                    self._cancel(trader, ib, account_id, trade, requested)
                if foreign:
                    raise UncancellableOrdersError(uncancellable_message(account_id, own_id, foreign))
                remaining = deadline - loop.time()
                if remaining <= 0:
                    described = ", ".join(describe_open(o) for o in map(open_order, still_open))
                    raise BrokerError(
                        f"account {account_id}: {len(still_open)} open order(s) not cancelled within "
                        f"{timeout_seconds:g} s: {described}"
                    )
                await woken_or_timeout(changed, min(self._poll, remaining))

    @staticmethod
    def _cancel(
        trader: IbkrConnection,
        ib: IB,
        account_id: str,
        trade: Trade,
        requested: dict[tuple[int, int, int], OpenOrder],
    ) -> None:
        key = (trade.order.clientId, trade.order.orderId, trade.order.permId)
        if key in requested:
            return
        requested[key] = open_order(trade)
        log.info("cancelling open order", account_id=account_id, **requested[key].to_dict())
        with trader.translated(f"cancelling order {trade.order.orderId}"):
            ib.cancelOrder(trade.order)

    async def place_orders(
        self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
    ) -> list[OrderResult]:
        trader = await self._traders.open(account_id)
        ib = await trader.client()
        contracts = await self._qualify(trader, [o.symbol for o in orders])
        if contracts:
            session = await self._session(trader, next(iter(contracts.values())))
        else:
            session = Session.REGULAR
        results: list[OrderResult] = []
        for request in orders:  # one burst: placeOrder sends and returns
            ticket = order_ticket(
                request, self._quotes.get(request.symbol), self._orders, session, self._clock(), self._rules
            )
            order = Order(
                action=request.action,
                totalQuantity=request.quantity,
                orderType=ticket.order_type,
                tif=ticket.time_in_force,
                outsideRth=ticket.outside_rth,
                orderRef=order_ref,
                account=account_id,
            )
            if ticket.limit_price is not None:
                order.lmtPrice = ticket.limit_price
            with trader.translated(f"placing {request.action} {request.quantity:g} {request.symbol}"):
                trade = ib.placeOrder(contracts[request.symbol], order)
            placed = Placed(trade, request, ticket, order_ref, trader.generation)
            self._placed[(account_id, int(trade.order.orderId))] = placed
            result = order_result(placed)
            log.info("order placed", account_id=account_id, **result.to_dict())
            results.append(result)
        return results

    async def wait_for_fills(
        self, account_id: str, order_ids: Sequence[int], timeout_seconds: float
    ) -> list[OrderResult]:
        unknown = [i for i in order_ids if (account_id, i) not in self._placed]
        if unknown:
            raise BrokerError(
                f"account {account_id}: orders {unknown} were not placed through this connection"
            )
        placed = [self._placed[(account_id, i)] for i in order_ids]
        trader = await self._traders.open(account_id)
        ib = await trader.client()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        with wakeup_on(ib.orderStatusEvent, ib.execDetailsEvent, ib.disconnectedEvent) as changed:
            while not all(p.trade.isDone() for p in placed):
                current = trader.generation
                if not trader.is_connected() or any(p.generation != current for p in placed):
                    raise BrokerError(
                        f"account {account_id}: connection to IB Gateway at {trader.endpoint} lost "
                        f"while waiting for fills of orders {list(order_ids)}; their outcome is unknown"
                    )
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning(
                        "orders not done within the fill timeout",
                        account_id=account_id,
                        timeout=timeout_seconds,
                    )
                    break
                await woken_or_timeout(changed, min(self._poll, remaining))
        return [order_result(p) for p in placed]
