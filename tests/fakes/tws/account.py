"""The fake gateway's world: accounts, quotes, the order book, what it received, and the test knobs.

All of it is plain data, touched only from the server's event loop (threaded users go through
`FakeTwsThread.call`). `to_json` / `from_json` give the state file and the control endpoint's view.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from tests.fakes.tws.market_hours import DEFAULT_MARKET_TIME, NEW_YORK

Action = Literal["BUY", "SELL"]

US_EXCHANGE = "NASDAQ"
# Dollars per unit of each currency: account values convert with these (ExchangeRate = rate / base's).
EXCHANGE_RATES = {"USD": 1.0, "CAD": 0.73, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "JPY": 0.0067}


def usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


# How old a quote's last trade is when the test does not say: live a moment; frozen, the last trade
# of a closed session; delayed, 15-20 minutes behind (IB's delayed data, "Delayed Streaming Data").
LAST_TRADE_AGE_SECONDS = {1: 2.0, 2: 4 * 3600.0, 3: 17 * 60.0}


@dataclass
class FakeQuote:
    """What a market data snapshot returns for one symbol; None sends no tick of that kind.

    `data_type` is the most permissive market data type the fake needs before it answers:
    1 live data is there, 2 only frozen data, 3 only delayed data (ticks 66/67/68/75, time 88).
    The last trade's time (tick 45, or 88 delayed) is `last_timestamp` (epoch seconds) when given,
    else `last_age_seconds` (default: the data type's usual age) before the moment of the answer.
    `close` is the previous session's close, as IB's close tick always is.
    """

    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    close: float | None = None
    last_timestamp: int | None = None
    data_type: int = 1
    last_age_seconds: float | None = None

    def last_time(self, at: float) -> int:
        """The last trade's time as the answer at epoch time `at` reports it."""
        if self.last_timestamp is not None:
            return self.last_timestamp
        age = self.last_age_seconds
        if age is None:
            age = LAST_TRADE_AGE_SECONDS.get(self.data_type, 0.0)
        return int(at - age)

    def mark(self) -> float | None:
        """The price the fake values a position at and fills a market order at."""
        if usable(self.last):
            return self.last
        if usable(self.bid) and usable(self.ask):
            return (self.bid or 0.0) / 2 + (self.ask or 0.0) / 2
        return self.close if usable(self.close) else None

    def fill_price(self, action: Action) -> float | None:
        side = self.ask if action == "BUY" else self.bid
        return side if usable(side) else self.mark()


@dataclass
class FakePosition:
    """One holding. The account's dict key names the listing (the symbol for a US stock, "SHEL.L" for
    SHEL on the LSE, an option's OCC code); the key has its own conId (`TwsState.con_id`)."""

    symbol: str
    quantity: float
    sec_type: str = "STK"
    avg_cost: float = 0.0  # in the position's currency
    local_symbol: str = ""  # defaults to the symbol; an option's OCC code, say
    exchange: str = ""  # the listing's primary exchange; "" is NASDAQ for a US stock
    currency: str = "USD"

    def listing_exchange(self) -> str:
        if self.exchange or self.sec_type != "STK" or self.currency != "USD":
            return self.exchange
        return US_EXCHANGE


@dataclass
class FakeAccount:
    """`cash` is the USD balance (US stocks settle in it); `other_cash` holds the other currencies'.
    Account values are reported in `base_currency`, converted at `TwsState.exchange_rates`.

    `day_trades_remaining` is IB's `DayTradesRemaining`: -1 unlimited (equity of 25,000 USD or more,
    or an account the pattern-day-trader rule does not limit), else what is left today;
    `day_trades_later` the values for T+1..T+4 (None: each as today's)."""

    account_id: str
    cash: float = 0.0
    positions: dict[str, FakePosition] = field(default_factory=dict)
    base_currency: str = "USD"
    other_cash: dict[str, float] = field(default_factory=dict)
    day_trades_remaining: int = -1
    day_trades_later: list[int] | None = None

    def cash_balances(self) -> dict[str, float]:
        return {"USD": self.cash, **self.other_cash}

    def day_trade_values(self) -> list[tuple[str, str]]:
        """(tag, value) of DayTradesRemaining and DayTradesRemainingT+1..T+4."""
        later = self.day_trades_later or [self.day_trades_remaining] * 4
        values = [("DayTradesRemaining", str(self.day_trades_remaining))]
        return values + [(f"DayTradesRemainingT+{n}", str(v)) for n, v in enumerate(later[:4], start=1)]


@dataclass
class LaggingPosition:
    """What reqPositions shows for a listing until `until` (None: not held yet), after a fill."""

    shown: FakePosition | None
    until: float


@dataclass
class FakeOrder:
    """An order in the fake's book, as placed (or pre-loaded by a test)."""

    client_id: int
    order_id: int
    perm_id: int
    account: str
    symbol: str
    action: Action
    quantity: float
    order_type: str = "MKT"
    limit_price: float | None = None
    time_in_force: str = "DAY"
    outside_rth: bool = False
    order_ref: str = ""
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0


@dataclass
class ReceivedOrder:
    """One placeOrder as it arrived, with the raw wire fields for assertions on anything else."""

    client_id: int
    order_id: int
    account: str
    symbol: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    time_in_force: str
    outside_rth: bool
    order_ref: str
    received_at: float
    fields: list[str] = field(default_factory=list)
    con_id: int = 0  # the contract's conId as sent (0: the order named it by symbol only)


@dataclass
class FillRecord:
    """One execution, in order: one the fake made, or one a test put there (`TwsState.add_execution`).
    Order ids are unique per client id only (as in IB); client 0 is an order entered by hand in TWS.
    `filled_at` is the wall clock; `executed_at` the gateway's market clock (epoch seconds), the time
    IB reports and counts days by."""

    order_id: int
    symbol: str
    action: str
    shares: float
    price: float
    filled_at: float
    client_id: int = 0
    account: str = ""
    exec_id: str = ""
    executed_at: float = 0.0
    perm_id: int = 0
    order_ref: str = ""
    cum_qty: float = 0.0
    avg_price: float = 0.0


@dataclass
class ReceivedCancel:
    client_id: int
    order_id: int
    received_at: float


@dataclass
class ServedRequest:
    """One request message and how long the gateway held it: from its arrival to its answer written
    (its latency included), on the wall clock. bench/latency.py subtracts these from a trigger's time."""

    client_id: int
    message_id: int
    arrived_at: float
    answered_at: float


@dataclass
class TwsState:
    """Everything a test sets up and inspects."""

    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    quotes: dict[str, FakeQuote] = field(default_factory=dict)
    open_orders: list[FakeOrder] = field(default_factory=list)
    received_orders: list[ReceivedOrder] = field(default_factory=list)
    cancels: list[ReceivedCancel] = field(default_factory=list)
    fills: list[FillRecord] = field(default_factory=list)
    # Knobs. The network and the market (profiles.py): every answer comes this long after its request,
    # other requests of the connection staying in flight; fills this long after the order is in.
    round_trip_seconds: float = 0.0
    fill_delay_seconds: float = 0.0
    partial_fills: dict[str, float] = field(default_factory=dict)
    rejections: dict[str, str] = field(default_factory=dict)
    confirm_cancels: bool = True
    drop_on_order: int | None = None
    unknown_symbols: set[str] = field(default_factory=set)
    commission_per_order: float = 0.0
    master_client_id: int | None = None
    next_order_id: int = 1
    next_perm_id: int = 900_001
    con_ids: dict[str, int] = field(default_factory=dict)
    # client ids and market hours
    market_time: float = DEFAULT_MARKET_TIME  # the gateway's clock (epoch seconds), for sessions
    # market data, rejections and pacing
    market_data_lines: int = 100  # lines of the login (TWS and every API client share them)
    snapshot_seconds: float = 11.0  # a snapshot holds its line this long, then ends (tickSnapshotEnd)
    snapshot_data_seconds: float = 0.0  # a snapshot's ticks come this long after the request (<= the end)
    fractional_orders: bool = False  # True: accept fractional-sized orders (IB refuses them via the API)
    max_messages_per_second: int | None = 50  # per connection; None: no pacing
    market_data_refusals: list[str] = field(default_factory=list)  # symbols answered with error 101
    paced_out: list[int] = field(default_factory=list)  # message ids dropped with error 100
    summary_refusals: list[int] = field(default_factory=list)  # account summary request ids refused (322)
    # messages received per client id (-1: before START_API); the most of one connection in flight at once
    messages_received: dict[int, int] = field(default_factory=dict)
    most_in_flight: int = 0
    # connections: at most this many API clients at once (IB: 32 per TWS / IB Gateway; None: no limit)
    max_connections: int | None = 32
    connection_refusals: list[int] = field(default_factory=list)  # client ids refused beyond the limit
    peak_connections: int = 0  # most API clients connected at once
    # positions, contracts and currencies
    position_copies: int = 2  # every row of a reqPositions answer is sent this many times (ib_insync #575)
    position_lag_seconds: float = 0.3  # positions show a fill this long after cash does (ib_async #15)
    exchange_rates: dict[str, float] = field(default_factory=lambda: dict(EXCHANGE_RATES))
    lagging: dict[str, LaggingPosition] = field(default_factory=dict)  # "account/key" -> shown until
    # executions and the pattern-day-trader counter
    execution_days: int = 1  # reqExecutions answers since midnight; TWS's Trade Log may show up to 7 days
    day_trade_violations: list[str] = field(default_factory=list)  # day trades made with none remaining

    def add_account(
        self,
        account_id: str,
        cash: float,
        positions: dict[str, float] | None = None,
        base_currency: str = "USD",
    ) -> None:
        account = FakeAccount(account_id, cash, base_currency=base_currency)
        for symbol, quantity in (positions or {}).items():
            account.positions[symbol] = FakePosition(symbol, quantity)
        self.accounts[account_id] = account

    def set_price(self, symbol: str, price: float | None, spread: float = 0.0) -> None:
        """A full live quote: last = close = price, bid/ask `spread` either side (0: both at price)."""
        quote = FakeQuote(last=price, close=price, bid=price, ask=price)
        if price is not None:
            quote.bid, quote.ask = price - spread, price + spread
        self.quotes[symbol] = quote

    def con_id(self, symbol: str) -> int:
        """The conId of a listing key (a US stock's key is its symbol)."""
        return self.con_ids.setdefault(symbol, 10_000 + len(self.con_ids))

    def knows(self, symbol: str) -> bool:
        return symbol not in self.unknown_symbols

    def listing(self, key: str) -> FakePosition:
        """The contract behind a listing key: a held one as held, any other key a US stock."""
        for account in self.accounts.values():
            held = account.positions.get(key)
            if held is not None:
                return FakePosition(
                    held.symbol, 0.0, held.sec_type, 0.0, held.local_symbol, held.exchange, held.currency
                )
        return FakePosition(key, 0.0)

    def find_listing(self, symbol: str, currency: str, exchange: str = "") -> str | None:
        """The key of the stock `symbol` in `currency` ("" is USD), on `exchange` ("" or SMART: any).

        A held listing matches on its own identity; any other symbol in USD is a US stock (the fake
        knows every US ticker but `unknown_symbols`), so SHEL in USD is the NYSE ADR even when the
        account holds only SHEL on the LSE.
        """
        currency = currency or "USD"
        if not self.knows(symbol):
            return None
        for account in self.accounts.values():
            for key, held in account.positions.items():
                same = held.sec_type == "STK" and (held.symbol, held.currency) == (symbol, currency)
                if same and exchange in ("", "SMART", held.listing_exchange()):
                    return key
        return symbol if currency == "USD" and exchange in ("", "SMART", US_EXCHANGE) else None

    def key_for_con_id(self, con_id: int) -> str | None:
        return next((key for key, known in self.con_ids.items() if known == con_id), None)

    def to_base(self, account: FakeAccount, amount: float, currency: str) -> float:
        if currency == account.base_currency:
            return amount
        return amount * self.exchange_rates[currency] / self.exchange_rates[account.base_currency]

    def total_cash(self, account: FakeAccount) -> float:
        """Cash of every currency, in the base currency (TotalCashValue)."""
        total = 0.0
        for currency, amount in account.cash_balances().items():
            total += self.to_base(account, amount, currency)
        return total

    def net_liquidation(self, account: FakeAccount) -> float:
        """Cash and positions (at their quote's mark, else their cost), in the base currency."""
        value = self.total_cash(account)
        for key, held in account.positions.items():
            quote = self.quotes.get(key) if held.sec_type == "STK" else None
            mark = quote.mark() if quote is not None else None
            amount = held.quantity * (mark if mark is not None else held.avg_cost)
            value += self.to_base(account, amount, held.currency)
        return value

    def reported_positions(self, account: FakeAccount) -> list[tuple[str, FakePosition]]:
        """The positions as reqPositions shows them now: a listing filled within the lag still shows
        its quantity from before the fill (it is not shown at all if it was not held)."""
        now_ = now()
        shown: dict[str, FakePosition | None] = dict(account.positions)
        prefix = f"{account.account_id}/"
        for lag_key, lagging in list(self.lagging.items()):
            if not lag_key.startswith(prefix):
                continue
            if lagging.until > now_:
                shown[lag_key.removeprefix(prefix)] = lagging.shown
            else:
                del self.lagging[lag_key]
        return [(key, held) for key, held in shown.items() if held is not None and held.quantity != 0]

    def _lag(self, account: FakeAccount, key: str) -> None:
        if self.position_lag_seconds <= 0:
            return
        lag_key = f"{account.account_id}/{key}"
        until = now() + self.position_lag_seconds
        lagging = self.lagging.get(lag_key)
        if lagging is not None and lagging.until > now():
            lagging.until = until  # a later fill of a lagging listing shows no sooner than it
            return
        held = account.positions.get(key)
        self.lagging[lag_key] = LaggingPosition(None if held is None else replace(held), until)

    def take_order_id(self) -> int:
        self.next_order_id += 1
        return self.next_order_id - 1

    def take_perm_id(self) -> int:
        self.next_perm_id += 1
        return self.next_perm_id - 1

    def apply_fill(self, order: FakeOrder, shares: float, price: float) -> None:
        """Move shares and cash in the account; the order's filled/avg fields follow."""
        account = self.accounts[order.account]
        self._lag(account, order.symbol)
        signed = shares if order.action == "BUY" else -shares
        held = account.positions.setdefault(order.symbol, FakePosition(order.symbol, 0.0, avg_cost=price))
        held.quantity += signed
        if held.quantity == 0:
            del account.positions[order.symbol]
        account.cash -= signed * price + self.commission_per_order
        total = order.filled + shares
        order.avg_fill_price = (order.avg_fill_price * order.filled + price * shares) / total
        order.filled = total
        order.last_fill_price = price
        self._record(
            FillRecord(
                order.order_id,
                order.symbol,
                order.action,
                shares,
                price,
                now(),
                order.client_id,
                order.account,
                perm_id=order.perm_id,
                order_ref=order.order_ref,
                cum_qty=order.filled,
                avg_price=order.avg_fill_price,
            )
        )

    def add_execution(
        self,
        account_id: str,
        symbol: str,
        action: Action,
        shares: float,
        price: float,
        at: datetime,
        client_id: int = 0,
    ) -> FillRecord:
        """An execution made before the test (by hand in TWS unless `client_id` says), at `at`.
        It is only a record: positions and cash stay as the test set them."""
        return self._record(
            FillRecord(
                0,
                symbol,
                action,
                shares,
                price,
                now(),
                client_id,
                account_id,
                executed_at=at.timestamp(),
                perm_id=self.take_perm_id(),
                cum_qty=shares,
                avg_price=price,
            )
        )

    def _record(self, record: FillRecord) -> FillRecord:
        if not record.executed_at:
            record.executed_at = self.market_time
        record.exec_id = f"0000e0d5.{record.perm_id:08x}.{len(self.fills) + 1:02d}.01"
        self._count_day_trade(record)
        self.fills.append(record)
        return record

    def _count_day_trade(self, record: FillRecord) -> None:
        """A fill opposite to one of the same listing on the same New York day is a day trade: it
        uses one of the account's remaining, or is a violation when none remain."""
        account = self.accounts.get(record.account)
        if account is None or account.day_trades_remaining < 0:
            return
        day = _new_york_day(record.executed_at)
        opposite = [
            f
            for f in self.fills
            if (f.account, f.symbol) == (record.account, record.symbol)
            and f.action != record.action
            and _new_york_day(f.executed_at) == day
        ]
        if not opposite:
            return
        if account.day_trades_remaining > 0:
            account.day_trades_remaining -= 1
            return
        side = "bought" if record.action == "SELL" else "sold"
        trade = f"{record.action} {record.shares:g} {record.symbol}"
        self.day_trade_violations.append(f"{record.account}: {trade} ({side} {day}), none remaining")

    def orders_for(self, client_id: int) -> list[FakeOrder]:
        return [o for o in self.open_orders if o.client_id == client_id or client_id in self._masters()]

    def _masters(self) -> set[int]:
        return {0} if self.master_client_id is None else {0, self.master_client_id}

    def sees_every_client(self, client_id: int) -> bool:
        """Client 0 and the master client id receive other clients' orders and executions."""
        return client_id in self._masters()

    def find_cancellable(self, client_id: int, order_id: int) -> FakeOrder | None:
        """An order this client may cancel: its own, or any for client 0 and the master client."""
        for order in self.open_orders:
            if order.order_id == order_id and (order.client_id == client_id or client_id in self._masters()):
                return order
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["unknown_symbols"] = sorted(self.unknown_symbols)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TwsState:
        state = cls()
        for key in (
            "round_trip_seconds",
            "fill_delay_seconds",
            "confirm_cancels",
            "drop_on_order",
            "master_client_id",
            "market_data_lines",
            "snapshot_seconds",
            "snapshot_data_seconds",
            "fractional_orders",
            "max_messages_per_second",
            "max_connections",
            "peak_connections",
            "most_in_flight",
            "position_copies",
            "position_lag_seconds",
            "execution_days",
        ):
            if key in data:
                setattr(state, key, data[key])
        state.partial_fills = dict(data.get("partial_fills", {}))
        state.rejections = dict(data.get("rejections", {}))
        state.unknown_symbols = set(data.get("unknown_symbols", []))
        state.exchange_rates = dict(data.get("exchange_rates", EXCHANGE_RATES))
        for account_id, raw in data.get("accounts", {}).items():
            positions = raw.get("positions", {})
            state.accounts[account_id] = FakeAccount(
                account_id,
                float(raw.get("cash", 0.0)),
                {
                    s: FakePosition(**p) if isinstance(p, dict) else FakePosition(s, p)
                    for s, p in positions.items()
                },
                base_currency=raw.get("base_currency", "USD"),
                other_cash=dict(raw.get("other_cash", {})),
                day_trades_remaining=int(raw.get("day_trades_remaining", -1)),
                day_trades_later=raw.get("day_trades_later"),
            )
        state.quotes = {s: FakeQuote(**q) for s, q in data.get("quotes", {}).items()}
        state.open_orders = [FakeOrder(**o) for o in data.get("open_orders", [])]
        return state


def now() -> float:
    return time.time()


def _new_york_day(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, NEW_YORK):%Y-%m-%d}"
