"""`IbkrBroker`: the `Broker` protocol on ib_async's async API, against IB Gateway / TWS.

Identity: every position comes with its contract (conId, exchange, currency), once per conId (IB may
repeat a row in one answer; the last one wins). `get_listings` names each symbol's US listing
(SMART, USD): the contract every order and price request uses, so a holding of the same ticker on
another exchange is never traded through it. Account values come with their currency.

Prices: US stocks on SMART in USD, qualified once and cached. Each symbol is asked for with market
data type live (1), then frozen (2), then delayed (3), until its snapshot has a usable price
(`quotes.choose_price`: last, then mid, then close; never zero, negative, NaN or a stale last).
A symbol that has none after all three is left out of the result and logged: the planner then
refuses the plan with a `PlanError` naming it, so nothing is ever traded on a bad price.
A symbol IB does not know at all is a `BrokerError`.

Orders: `order_tickets.order_ticket` decides type, limit, time in force and outsideRth; every order
carries `orderRef` = the event id and the account. Requests that share a reply key in ib_async
(positions, open orders, the connection-wide market data type) run one at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from ib_async import IB, AccountValue, Contract, Order, Position, Stock, Ticker, Trade

from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.models import (
    AccountValues,
    BrokerError,
    BrokerPosition,
    Listing,
    OpenOrder,
    OrderRequest,
    OrderResult,
)
from event_processor.brokers.order_tickets import OrderTicket, order_ticket
from event_processor.brokers.quotes import Quote, choose_price
from rebalancer_shared.config import IbkrSettings, OrderSettings

log = structlog.get_logger(__name__)

MARKET_DATA_TYPES = (1, 2, 3)  # live, frozen, delayed
ACCOUNT_TAGS = ("NetLiquidation", "TotalCashValue")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def quote_from_ticker(symbol: str, ticker: Ticker) -> Quote:
    """The snapshot's values in plain form (ib_async marks "none" with NaN or -1)."""
    return Quote(
        symbol=symbol,
        last=_number(ticker.last),
        bid=_number(ticker.bid),
        ask=_number(ticker.ask),
        close=_number(ticker.close),
        last_time=ticker.lastTimestamp or ticker.delayedLastTimestamp,
        market_data_type=int(ticker.marketDataType),
    )


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
    errors = [entry for entry in trade.log if entry.errorCode]
    message = f"IB error {errors[-1].errorCode}: {errors[-1].message}" if errors else ""
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
    ) -> None:
        self._settings = settings
        self._orders = orders
        self._clock = clock
        self._poll = poll_interval_seconds
        self._connection = IbkrConnection(settings, ib_factory)
        self._request_lock = asyncio.Lock()
        self._contracts: dict[str, Contract] = {}
        self._quotes: dict[str, Quote] = {}
        self._placed: dict[int, _Placed] = {}

    async def close(self) -> None:
        await self._connection.close()

    # --- reads ------------------------------------------------------------------------------------

    async def get_account_values(self, account_id: str) -> AccountValues:
        ib = await self._connection.client()
        collected: dict[str, AccountValue] = {}

        def on_value(value: AccountValue) -> None:
            if value.account == account_id and value.tag in ACCOUNT_TAGS:
                collected.setdefault(value.tag, value)

        what = f"account summary of {account_id}"
        # ib_async's own accountSummaryAsync loads once and then trusts the subscription, which IB
        # refreshes only every few minutes; a fresh request per call sees the cash the sells freed.
        # The client and wrapper methods used for it are untyped in ib_async 2.1.
        async with self._request_lock:
            req_id = ib.client.getReqId()
            future: asyncio.Future[object] = ib.wrapper.startReq(req_id)  # type: ignore[no-untyped-call]
            ib.accountSummaryEvent += on_value
            try:
                with self._connection.translated(what):
                    ib.client.reqAccountSummary(req_id, "All", ",".join(ACCOUNT_TAGS))  # type: ignore[no-untyped-call]
                await self._connection.request(what, future)
            finally:
                ib.accountSummaryEvent -= on_value
                if ib.isConnected():
                    ib.client.cancelAccountSummary(req_id)  # type: ignore[no-untyped-call]
        return AccountValues(
            account_id=account_id,
            net_liquidation=self._account_figure(account_id, collected, "NetLiquidation"),
            total_cash=self._account_figure(account_id, collected, "TotalCashValue"),
            currency=self._account_currency(account_id, collected),
        )

    @staticmethod
    def _account_currency(account_id: str, values: dict[str, AccountValue]) -> str:
        """The base currency both summary figures are in (IB sends them in it: USD, CAD, EUR, ...)."""
        currencies = sorted({value.currency for value in values.values()})
        if len(currencies) != 1:
            raise BrokerError(
                f"account {account_id}: NetLiquidation and TotalCashValue came in different currencies "
                f"({', '.join(currencies)}); both should be in the account's base currency"
            )
        return currencies[0]

    @staticmethod
    def _account_figure(account_id: str, values: dict[str, AccountValue], tag: str) -> float:
        raw = values.get(tag)
        try:
            number = float(raw.value) if raw is not None else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise BrokerError(
                f"account {account_id}: IB Gateway sent no usable {tag} "
                f"(got {raw.value if raw else 'nothing'}); is the account managed by this login?"
            )
        return number

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
        return [_open_order(trade) for trade in await self._open_trades(ib, account_id)]

    async def _open_trades(self, ib: IB, account_id: str) -> list[Trade]:
        async with self._request_lock:
            trades = await self._connection.request(
                f"open orders of {account_id}", ib.reqAllOpenOrdersAsync()
            )
        return [t for t in trades if t.order.account in (account_id, "") and not t.isDone()]

    async def get_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        ib = await self._connection.client()
        wanted = list(dict.fromkeys(symbols))
        contracts = await self._qualify(ib, wanted)
        prices: dict[str, float] = {}
        async with self._request_lock:
            for data_type in MARKET_DATA_TYPES:
                pending = [s for s in wanted if s not in prices]
                if not pending:
                    break
                with self._connection.translated("setting the market data type"):
                    ib.reqMarketDataType(data_type)
                quotes = await self._snapshot(ib, {s: contracts[s] for s in pending})
                prices.update(self._usable(quotes, data_type))
        for symbol in wanted:
            if symbol not in prices:
                log.warning("no usable price for symbol after live, frozen and delayed data", symbol=symbol)
        return prices

    def _usable(self, quotes: dict[str, Quote], data_type: int) -> dict[str, float]:
        now = self._clock()
        usable: dict[str, float] = {}
        for symbol, quote in quotes.items():
            chosen = choose_price(quote, now, self._settings.max_price_age_seconds)
            if chosen is None:
                log.info(
                    "snapshot has no usable price", symbol=symbol, market_data_type=data_type, quote=quote
                )
                continue
            self._quotes[symbol] = quote
            usable[symbol] = chosen.price
            log.debug(
                "price", symbol=symbol, price=chosen.price, source=chosen.source, market_data_type=data_type
            )
        return usable

    async def _snapshot(self, ib: IB, contracts: dict[str, Contract]) -> dict[str, Quote]:
        # ib_async keeps one Ticker per contract across requests: drop it so values from an
        # earlier snapshot cannot pass for this one's.
        for contract in contracts.values():
            ib.wrapper.tickers.pop(hash(contract), None)
        what = f"market data snapshot of {', '.join(contracts)}"
        try:
            with self._connection.translated(what):
                await asyncio.wait_for(
                    ib.reqTickersAsync(*contracts.values()), self._settings.market_data_timeout_seconds
                )
        except TimeoutError:
            log.warning("market data snapshot timed out; using what arrived", symbols=list(contracts))
        quotes: dict[str, Quote] = {}
        for symbol, contract in contracts.items():
            ticker = ib.ticker(contract)
            if ticker is not None:
                quotes[symbol] = quote_from_ticker(symbol, ticker)
        return quotes

    async def _qualify(self, ib: IB, symbols: Sequence[str]) -> dict[str, Contract]:
        known = await self._qualify_known(ib, symbols)
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise BrokerError(
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

    async def cancel_open_orders(self, account_id: str, timeout_seconds: float) -> list[OpenOrder]:
        ib = await self._connection.client()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        requested: dict[tuple[int, int, int], OpenOrder] = {}
        while True:
            still_open = await self._open_trades(ib, account_id)
            if not still_open:
                return list(requested.values())
            for trade in still_open:
                key = (trade.order.clientId, trade.order.orderId, trade.order.permId)
                if key not in requested:
                    requested[key] = _open_order(trade)
                    log.info("cancelling open order", account_id=account_id, **requested[key].to_dict())
                    with self._connection.translated(f"cancelling order {trade.order.orderId}"):
                        ib.cancelOrder(trade.order)
            remaining = deadline - loop.time()
            if remaining <= 0:
                described = ", ".join(
                    f"{o.order_id} ({o.action} {o.quantity:g} {o.symbol}, client {o.client_id})"
                    for o in map(_open_order, still_open)
                )
                raise BrokerError(
                    f"account {account_id}: {len(still_open)} open order(s) not cancelled within "
                    f"{timeout_seconds:g} s: {described}"
                )
            await asyncio.sleep(min(self._poll, remaining))

    async def place_orders(
        self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
    ) -> list[OrderResult]:
        ib = await self._connection.client()
        contracts = await self._qualify(ib, [o.symbol for o in orders])
        now = self._clock()
        results: list[OrderResult] = []
        for request in orders:
            ticket = order_ticket(request, self._quotes.get(request.symbol), self._orders, now)
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
            with self._connection.translated(
                f"placing {request.action} {request.quantity:g} {request.symbol}"
            ):
                trade = ib.placeOrder(contracts[request.symbol], order)
            placed = _Placed(trade, request, ticket, order_ref, self._connection.generation)
            self._placed[int(trade.order.orderId)] = placed
            result = _result(placed)
            log.info("order placed", account_id=account_id, **result.to_dict())
            results.append(result)
        return results

    async def wait_for_fills(
        self, account_id: str, order_ids: Sequence[int], timeout_seconds: float
    ) -> list[OrderResult]:
        unknown = [i for i in order_ids if i not in self._placed]
        if unknown:
            raise BrokerError(
                f"account {account_id}: orders {unknown} were not placed through this connection"
            )
        placed = [self._placed[i] for i in order_ids]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while not all(p.trade.isDone() for p in placed):
            current = self._connection.generation
            if not self._connection.is_connected() or any(p.generation != current for p in placed):
                raise BrokerError(
                    f"account {account_id}: connection to IB Gateway at {self._connection.endpoint} lost "
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
