"""`IbkrBroker`: the `Broker` protocol on ib_async's async API, against IB Gateway / TWS.

Identity: every position comes with its contract (conId, exchange, currency), once per conId (IB may
repeat a row in one answer; the last one wins). `get_listings` names each symbol's US listing
(SMART, USD): the contract every order and price request uses, so a holding of the same ticker on
another exchange is never traded through it. Account values come with their currency
(`ibkr_account_values`).

Day trades: `DayTradesRemaining` from the account summary; the day's executions from every connection
held for the account, the day by the gateway's clock in New York (`ibkr_executions`).

Prices: US stocks on SMART in USD, qualified once and cached. Each symbol is asked for with market
data type live (1), then frozen (2), then delayed (3), until its snapshot has a usable price
(`quotes.choose_price`: last, then mid, then close; never zero, negative, NaN, older than
`max_price_age_seconds` or a midpoint of a crossed or too wide spread). Snapshots go out in batches
under the login's market data lines (`ibkr_market_data.SnapshotReader`). A symbol that has no usable
price after all three is left out of the result and logged with why: the planner then refuses the
plan with a `PlanError` naming it, so nothing is ever traded on a bad price. A symbol IB does not
know at all is a `BrokerError`.

Orders: `order_tickets.order_ticket` decides type, limit, time in force and outsideRth; every order
carries `orderRef` = the event id and the account. IB's rejection of an order (error 201 with its
reason, 10243 for a fractional size, ...) becomes its result's `message`. Requests that share a reply
key in ib_async (positions, open orders, the connection-wide market data type) run one at a time.

Pacing: every message leaves at most 40 a second, in bursts of 5 (`paced`), under IB's 50.

Client ids. IB lets only the client that placed an order cancel it (client 0 also cancels orders
entered by hand in TWS). So every mutating run of an account (cancel-orders, rebalance) trades through
a connection of its own with the account's fixed trading client id (`trading_client_ids`): any later
attempt, after a crash or on another replica, connects with the same id and can cancel what an
earlier one left working. The account lock lets only one mutating run of an account at a time, so
the id is never wanted twice (a connection the gateway has not dropped yet gives error 326: retried
briefly, then the event retries). Reads (positions, values, prices) use one shared connection with
`IB_CLIENT_ID` or a random id. An open order of the account with another client id (placed by hand
in TWS, by another program, or by a release before this scheme) cannot be cancelled by us: the run
stops and says so. Orders of other accounts, and FA group orders without an account, are not ours.

Market hours. Before placing, the gateway's clock (reqCurrentTime) is held against the contract's
sessions (contract details' liquidHours and tradingHours, `sessions.py`): outside the regular session
a market order is not placed (IB would hold it until the open); with EXTENDED_HOURS_ENABLED in the
extended session a limit order with outsideRth goes instead.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from ib_async import IB, Contract, Order, Position, Stock, Trade

from event_processor.brokers.day_trades import trading_day
from event_processor.brokers.ibkr_account_values import (
    ACCOUNT_TAGS,
    DAY_TRADE_TAGS,
    account_summary,
    account_values,
    day_trades_remaining,
)
from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.ibkr_executions import executions_on, utc_execution_times
from event_processor.brokers.ibkr_market_data import SnapshotReader
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
from event_processor.brokers.order_tickets import OrderTicket, order_ticket
from event_processor.brokers.quotes import PriceRules, Quote, choose_price, price_problems
from event_processor.brokers.sessions import Session, market_hours
from rebalancer_shared.config import IbkrSettings, OrderSettings
from rebalancer_shared.failures import WaitForSession

log = structlog.get_logger(__name__)

MARKET_DATA_TYPES = (1, 2, 3)  # live, frozen, delayed
# Contract details asked for at once: each request waits `request_timeout_seconds`, and messages
# leave at `MESSAGES_PER_SECOND`.
QUALIFY_BATCH = 40
# IB refuses (error 100, and drops) a connection's messages beyond 50 in a second. ib_async's own
# throttle (45 per 1 s, sent as one burst) is measured where messages leave: a burst that reaches the
# gateway late shares one of its seconds with the next burst, up to 90. So messages leave at 40 a
# second in bursts of 5 every 1/8 s: any one second at the gateway holds at most 40 + 5.
MESSAGES_PER_SECOND = 40
PACING_BURSTS_PER_SECOND = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


def paced(ib: IB) -> IB:
    """`ib` with its request throttle set to stay under IB's pacing limit (see MESSAGES_PER_SECOND),
    reading execution times in UTC (ibkr_executions.py)."""
    ib.client.MaxRequests = MESSAGES_PER_SECOND // PACING_BURSTS_PER_SECOND
    # Seconds, compared with loop.time(); ib_async declares the attribute with an int default (1).
    ib.client.RequestsInterval = 1 / PACING_BURSTS_PER_SECOND  # type: ignore[assignment]
    return utc_execution_times(ib)


@dataclass
class _Placed:
    trade: Trade
    request: OrderRequest
    ticket: OrderTicket
    order_ref: str
    generation: int


def _open_order(trade: Trade) -> OpenOrder:
    order = trade.order
    return OpenOrder(
        order_id=int(order.orderId),
        perm_id=int(order.permId or trade.orderStatus.permId),
        client_id=int(order.clientId),
        symbol=trade.contract.symbol,
        action=str(order.action),
        quantity=float(order.totalQuantity),
        order_type=str(order.orderType),
        status=trade.orderStatus.status,
        order_ref=str(order.orderRef or ""),
        filled_quantity=float(trade.orderStatus.filled or 0.0),
    )


TRADING_CLIENT_ID_SPAN = 1_000_000


def default_trading_client_id(account_id: str, base: int) -> int:
    """`base` + a stable number from the account id (the same on every machine, every start)."""
    return base + zlib.crc32(account_id.encode()) % TRADING_CLIENT_ID_SPAN


def trading_client_ids(account_ids: Sequence[str], base: int) -> dict[str, int]:
    """Each account's fixed trading client id; two accounts whose numbers meet step apart in id order."""
    taken: set[int] = set()
    ids: dict[str, int] = {}
    for account_id in sorted(account_ids):
        candidate = default_trading_client_id(account_id, base)
        while candidate in taken:
            candidate = base + (candidate - base + 1) % TRADING_CLIENT_ID_SPAN
        taken.add(candidate)
        ids[account_id] = candidate
    return ids


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
    trades = await connection.request(f"open orders of {account_id}", ib.reqAllOpenOrdersAsync())
    return [t for t in trades if t.order.account == account_id and not t.isDone()]


def _describe_open(order: OpenOrder) -> str:
    return f"{order.order_id} ({order.action} {order.quantity:g} {order.symbol}, client {order.client_id})"


def _uncancellable(account_id: str, own_id: int, foreign: Sequence[Trade]) -> str:
    described = []
    for order in map(_open_order, foreign):
        origin = (
            "entered by hand in TWS" if order.client_id == 0 else f"placed by API client {order.client_id}"
        )
        described.append(
            f"{order.action} {order.quantity:g} {order.symbol} (order {order.order_id}, {origin})"
        )
    return (
        f"account {account_id}: open order(s) this processor cannot cancel: {'; '.join(described)}. IB lets "
        f"only the client that placed an order cancel it, and this account trades as client {own_id}; "
        "cancel them in TWS (or wait until they are done), then the event retries"
    )


def _ib_error(trade: Trade) -> str:
    """IB's last word on the order when it was an error or a rejection: "IB error 201: <IB's text>"."""
    errors = [entry for entry in trade.log if entry.errorCode]
    if not errors:
        return ""
    # ib_async logs "Error 201, reqId 7: Order rejected - reason:..."; keep IB's own text.
    text = errors[-1].message.split(": ", 1)[-1]
    return f"IB error {errors[-1].errorCode}: {text}"


def _position(position: Position) -> BrokerPosition:
    contract = position.contract
    return BrokerPosition(
        symbol=contract.symbol,
        quantity=float(position.position),
        sec_type=contract.secType,
        avg_cost=float(position.avgCost),
        local_symbol=contract.localSymbol,
        con_id=int(contract.conId),
        exchange=contract.exchange,
        primary_exchange=contract.primaryExchange,
        currency=contract.currency,
    )


def _result(placed: _Placed) -> OrderResult:
    trade = placed.trade
    status = trade.orderStatus
    fills = [fill.execution for fill in trade.fills]
    filled = max(float(status.filled or 0.0), sum(float(e.shares) for e in fills))
    avg = float(status.avgFillPrice or 0.0)
    if not avg and filled:
        avg = sum(float(e.shares) * float(e.price) for e in fills) / filled
    message = _ib_error(trade)
    return OrderResult(
        symbol=placed.request.symbol,
        action=placed.request.action,
        quantity=placed.request.quantity,
        order_type=placed.ticket.order_type,
        limit_price=placed.ticket.limit_price,
        time_in_force=placed.ticket.time_in_force,
        outside_rth=placed.ticket.outside_rth,
        order_id=int(trade.order.orderId),
        perm_id=int(trade.order.permId or status.permId or 0),
        order_ref=placed.order_ref,
        status=status.status,
        filled_quantity=filled,
        avg_fill_price=avg,
        message=message,
    )


class IbkrBroker:
    """The real broker. One instance keeps one connection for every account it serves."""

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
        self._ib_factory = ib_factory
        self._connection = IbkrConnection(settings, lambda: paced(ib_factory()))
        self._rules = PriceRules(settings.max_price_age_seconds, settings.max_spread_pct)
        self._snapshots = SnapshotReader(settings, self._connection, clock, poll_interval_seconds)
        self._trading_ids = trading_client_ids(account_ids, settings.trading_client_id_base)
        self._traders: dict[str, IbkrConnection] = {}
        self._request_lock = asyncio.Lock()
        self._contracts: dict[str, Contract] = {}
        self._quotes: dict[str, Quote] = {}
        # Order ids are unique per client id only: each account's trading client numbers its own.
        self._placed: dict[tuple[str, int], _Placed] = {}

    async def close(self) -> None:
        for account_id in list(self._traders):
            await self.release(account_id)
        await self._connection.close()

    def trading_client_id(self, account_id: str) -> int:
        """The fixed client id of the account's mutating runs."""
        known = self._trading_ids.get(account_id)
        return (
            known
            if known is not None
            else default_trading_client_id(account_id, self._settings.trading_client_id_base)
        )

    def _trader(self, account_id: str) -> IbkrConnection:
        trader = self._traders.get(account_id)
        if trader is None:
            trader = IbkrConnection(
                self._settings,
                lambda: paced(self._ib_factory()),
                client_id=self.trading_client_id(account_id),
                purpose=f"trading {account_id}",
            )
            self._traders[account_id] = trader
        return trader

    async def release(self, account_id: str) -> None:
        """The account's mutating run ended: close its trading connection."""
        trader = self._traders.pop(account_id, None)
        if trader is not None:
            await trader.close()

    # --- reads ------------------------------------------------------------------------------------

    async def get_account_values(self, account_id: str) -> AccountValues:
        values = await account_summary(self._connection, self._request_lock, account_id, ACCOUNT_TAGS)
        return account_values(account_id, values)

    async def get_day_trades_remaining(self, account_id: str) -> int | None:
        values = await account_summary(self._connection, self._request_lock, account_id, DAY_TRADE_TAGS)
        return day_trades_remaining(account_id, values)

    async def get_todays_executions(self, account_id: str) -> list[BrokerExecution]:
        ib = await self._connection.client()
        async with self._request_lock:  # reqCurrentTime shares one reply key per connection
            now = await self._connection.request("the gateway's time", ib.reqCurrentTimeAsync())
        sources = [(self._connection, ib)]
        trader = self._traders.get(account_id)
        if trader is not None and trader.is_connected():
            sources.append((trader, await trader.client()))
        return await executions_on(sources, account_id, trading_day(now))

    async def get_positions(self, account_id: str) -> list[BrokerPosition]:
        ib = await self._connection.client()
        async with self._request_lock:
            positions = await self._connection.request(f"positions of {account_id}", ib.reqPositionsAsync())
        latest: dict[int, Position] = {}
        for position in positions:
            if position.account == account_id:
                latest[position.contract.conId] = position  # a repeated conId: the last row wins
        return [_position(p) for p in latest.values() if p.position != 0]

    async def get_listings(self, symbols: Sequence[str]) -> dict[str, Listing]:
        ib = await self._connection.client()
        known = await self._qualify_known(ib, list(dict.fromkeys(symbols)))
        return {
            symbol: Listing(symbol, int(c.conId), c.primaryExchange, c.currency)
            for symbol, c in known.items()
        }

    async def get_open_orders(self, account_id: str) -> list[OpenOrder]:
        ib = await self._connection.client()
        async with self._request_lock:
            trades = await _open_trades(self._connection, ib, account_id)
        return [_open_order(trade) for trade in trades]

    async def get_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        ib = await self._connection.client()
        wanted = list(dict.fromkeys(symbols))
        contracts: dict[str, Contract] = {}
        for start in range(0, len(wanted), QUALIFY_BATCH):  # each batch gets the request timeout
            contracts.update(await self._qualify(ib, wanted[start : start + QUALIFY_BATCH]))
        prices: dict[str, float] = {}
        async with self._request_lock:
            for data_type in MARKET_DATA_TYPES:
                pending = [s for s in wanted if s not in prices]
                if not pending:
                    break
                with self._connection.translated("setting the market data type"):
                    ib.reqMarketDataType(data_type)
                quotes = await self._snapshots.quotes(ib, {s: contracts[s] for s in pending})
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

    async def _qualify(self, ib: IB, symbols: Sequence[str]) -> dict[str, Contract]:
        known = await self._qualify_known(ib, symbols)
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise UnknownSymbolError(
                f"IB does not know (or finds ambiguous) the US stock(s) {', '.join(unknown)} "
                "on SMART in USD; check the symbols of the allocation"
            )
        return known

    async def _qualify_known(self, ib: IB, symbols: Sequence[str]) -> dict[str, Contract]:
        """The qualified US contract (conId filled in) of each symbol IB knows on SMART in USD."""
        missing = [s for s in symbols if s not in self._contracts]
        if missing:
            fresh = [Stock(symbol, "SMART", "USD") for symbol in missing]
            results = await self._connection.request(
                f"contract details of {', '.join(missing)}", ib.qualifyContractsAsync(*fresh)
            )
            for symbol, contract, result in zip(missing, fresh, results, strict=True):
                if isinstance(result, Contract):
                    self._contracts[symbol] = contract
        return {s: self._contracts[s] for s in symbols if s in self._contracts}

    # --- writes -----------------------------------------------------------------------------------

    async def _session(self, ib: IB, contract: Contract) -> Session:
        """The session now, by the gateway's clock and the contract's hours; raise if closed for us."""
        what = f"trading hours of {contract.symbol}"
        details = await self._connection.request(what, ib.reqContractDetailsAsync(contract))
        now = await self._connection.request("the gateway's time", ib.reqCurrentTimeAsync())
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
        trader = self._trader(account_id)
        ib = await trader.client()
        own_id = self.trading_client_id(account_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        requested: dict[tuple[int, int, int], OpenOrder] = {}
        while True:
            still_open = await _open_trades(trader, ib, account_id)
            foreign = [t for t in still_open if int(t.order.clientId) != own_id]
            ours = [t for t in still_open if int(t.order.clientId) == own_id]
            if not still_open:
                return list(requested.values())
            for trade in ours:
                self._cancel(trader, ib, account_id, trade, requested)
            if foreign:
                raise UncancellableOrdersError(_uncancellable(account_id, own_id, foreign))
            remaining = deadline - loop.time()
            if remaining <= 0:
                described = ", ".join(_describe_open(o) for o in map(_open_order, still_open))
                raise BrokerError(
                    f"account {account_id}: {len(still_open)} open order(s) not cancelled within "
                    f"{timeout_seconds:g} s: {described}"
                )
            await asyncio.sleep(min(self._poll, remaining))

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
        requested[key] = _open_order(trade)
        log.info("cancelling open order", account_id=account_id, **requested[key].to_dict())
        with trader.translated(f"cancelling order {trade.order.orderId}"):
            ib.cancelOrder(trade.order)

    async def place_orders(
        self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
    ) -> list[OrderResult]:
        trader = self._trader(account_id)
        ib = await trader.client()
        contracts = await self._qualify(ib, [o.symbol for o in orders])
        session = await self._session(ib, next(iter(contracts.values()))) if contracts else Session.REGULAR
        results: list[OrderResult] = []
        for request in orders:
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
            placed = _Placed(trade, request, ticket, order_ref, trader.generation)
            self._placed[(account_id, int(trade.order.orderId))] = placed
            result = _result(placed)
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
        trader = self._trader(account_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
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
                    "orders not done within the fill timeout", account_id=account_id, timeout=timeout_seconds
                )
                break
            await asyncio.sleep(min(self._poll, remaining))
        return [_result(p) for p in placed]
