"""`SimulatedBroker`: an in-memory account that fills market orders at its prices (demo, benchmarks).

Knobs: `latency_seconds` slept on every call; `partial_fills` (symbol -> fraction filled, the rest
stays open); `rejections` (symbol -> reason); `confirm_cancels` (False: cancels are never confirmed).
Every order placed is kept in `placed_orders`, every cancel in `cancelled_orders`.
Stocks are US listings in USD; each symbol (and each other position's key) has a conId of its own.

Day trades: every fill is remembered as an execution at `clock()`, and `get_todays_executions` gives
those of the current New York day (`add_execution` puts earlier ones there). `DayTradesRemaining` is
-1 (unlimited) unless an account is added with a number; the simulation does not count it down.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from event_processor.brokers.day_trades import UNLIMITED, on_trading_day, trading_day
from event_processor.brokers.models import (
    AccountValues,
    BrokerError,
    BrokerExecution,
    BrokerPosition,
    Listing,
    OpenOrder,
    OrderRequest,
    OrderResult,
)
from event_processor.brokers.quotes import is_usable

SIMULATED_CLIENT_ID = 0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimulatedAccount:
    cash: float
    positions: dict[str, float] = field(default_factory=dict)
    other_positions: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (secType, qty)
    open_orders: dict[int, OrderResult] = field(default_factory=dict)
    executions: list[BrokerExecution] = field(default_factory=list)
    day_trades_remaining: int = UNLIMITED


class SimulatedBroker:
    """Implements `Broker` over in-memory accounts; fills are immediate and at the given prices."""

    def __init__(
        self,
        prices: Mapping[str, float] | None = None,
        *,
        latency_seconds: float = 0.0,
        partial_fills: Mapping[str, float] | None = None,
        rejections: Mapping[str, str] | None = None,
        confirm_cancels: bool = True,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.prices: dict[str, float] = dict(prices or {})
        self.clock = clock
        self.latency_seconds = latency_seconds
        self.partial_fills: dict[str, float] = dict(partial_fills or {})
        self.rejections: dict[str, str] = dict(rejections or {})
        self.confirm_cancels = confirm_cancels
        self.accounts: dict[str, SimulatedAccount] = {}
        self.placed_orders: list[OrderResult] = []
        self.cancelled_orders: list[OpenOrder] = []
        self._results: dict[int, OrderResult] = {}
        self._next_order_id = 1
        self._con_ids: dict[str, int] = {}

    def add_account(
        self,
        account_id: str,
        cash: float,
        positions: Mapping[str, float] | None = None,
        other_positions: Mapping[str, tuple[str, float]] | None = None,
        day_trades_remaining: int = UNLIMITED,
    ) -> None:
        """Create (or replace) an account with stock `positions` and non-stock `other_positions`."""
        self.accounts[account_id] = SimulatedAccount(
            cash=cash,
            positions=dict(positions or {}),
            other_positions=dict(other_positions or {}),
            day_trades_remaining=day_trades_remaining,
        )

    def add_execution(self, account_id: str, execution: BrokerExecution) -> None:
        """An execution made before (by hand, say): a record only, positions and cash stay."""
        self._account(account_id).executions.append(execution)

    def add_open_order(self, account_id: str, symbol: str, action: str, quantity: float) -> int:
        """A working order left over from an earlier run (for cancel scenarios)."""
        order_id = self._take_order_id()
        self._account(account_id).open_orders[order_id] = OrderResult(
            symbol=symbol,
            action="BUY" if action == "BUY" else "SELL",
            quantity=quantity,
            order_type="MKT",
            limit_price=None,
            time_in_force="DAY",
            outside_rth=False,
            order_id=order_id,
            perm_id=order_id,
            order_ref="earlier",
            status="Submitted",
        )
        return order_id

    async def close(self) -> None:
        return None

    # --- reads ------------------------------------------------------------------------------------

    async def _pause(self) -> None:
        await asyncio.sleep(self.latency_seconds)

    def _account(self, account_id: str) -> SimulatedAccount:
        account = self.accounts.get(account_id)
        if account is None:
            raise BrokerError(f"account {account_id}: not an account of the simulated broker")
        return account

    def _mark(self, symbol: str) -> float:
        price = self.prices.get(symbol)
        return price if price is not None and is_usable(price) else 0.0

    async def get_account_values(self, account_id: str) -> AccountValues:
        await self._pause()
        account = self._account(account_id)
        stocks = sum(qty * self._mark(symbol) for symbol, qty in account.positions.items())
        return AccountValues(account_id, account.cash + stocks, account.cash)

    def _con_id(self, key: str) -> int:
        return self._con_ids.setdefault(key, 1_000 + len(self._con_ids))

    async def get_positions(self, account_id: str) -> list[BrokerPosition]:
        await self._pause()
        account = self._account(account_id)
        stocks = [
            BrokerPosition(s, q, local_symbol=s, con_id=self._con_id(s))
            for s, q in sorted(account.positions.items())
            if q
        ]
        others = [
            BrokerPosition(k, q, sec_type=t, local_symbol=k, con_id=self._con_id(f"{k} ({t})"))
            for k, (t, q) in sorted(account.other_positions.items())
        ]
        return stocks + others

    async def wait_for_position_change(self, account_id: str, seconds: float) -> None:
        """Positions change with each fill, before any wait could begin: nothing to wake on."""
        await asyncio.sleep(seconds)

    async def reserve(self, account_id: str) -> None:
        """Nothing to open: the simulation has no connections."""

    async def get_listings(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, Listing]:
        await self._pause()
        return {s: Listing(s, self._con_id(s)) for s in symbols}

    async def get_prices(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, float]:
        await self._pause()
        return {s: self.prices[s] for s in symbols if s in self.prices and is_usable(self.prices[s])}

    async def get_open_orders(self, account_id: str) -> list[OpenOrder]:
        await self._pause()
        return [_as_open_order(o) for o in self._account(account_id).open_orders.values()]

    async def get_todays_executions(self, account_id: str) -> list[BrokerExecution]:
        await self._pause()
        return on_trading_day(self._account(account_id).executions, trading_day(self.clock()))

    async def get_day_trades_remaining(self, account_id: str) -> int | None:
        await self._pause()
        return self._account(account_id).day_trades_remaining

    # --- writes -----------------------------------------------------------------------------------

    async def cancel_open_orders(self, account_id: str, timeout_seconds: float) -> list[OpenOrder]:
        await self._pause()
        account = self._account(account_id)
        pending = [_as_open_order(o) for o in account.open_orders.values()]
        self.cancelled_orders.extend(pending)
        if pending and not self.confirm_cancels:
            await asyncio.sleep(timeout_seconds)
            ids = ", ".join(str(o.order_id) for o in pending)
            raise BrokerError(
                f"account {account_id}: {len(pending)} open order(s) not cancelled within "
                f"{timeout_seconds:g} s: {ids}"
            )
        for order in pending:
            self._results[order.order_id] = replace(
                account.open_orders.pop(order.order_id), status="Cancelled"
            )
        return pending

    def _take_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id - 1

    async def release(self, account_id: str) -> None:
        return None

    async def place_orders(
        self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
    ) -> list[OrderResult]:
        await self._pause()
        account = self._account(account_id)
        results = [self._execute(account, request, order_ref) for request in orders]
        self.placed_orders.extend(results)
        return results

    def _execute(self, account: SimulatedAccount, request: OrderRequest, order_ref: str) -> OrderResult:
        order_id = self._take_order_id()
        result = OrderResult(
            symbol=request.symbol,
            action=request.action,
            quantity=request.quantity,
            order_type="MKT",
            limit_price=None,
            time_in_force="DAY",
            outside_rth=False,
            order_id=order_id,
            perm_id=order_id,
            order_ref=order_ref,
            status="Submitted",
        )
        reason = self.rejections.get(request.symbol)
        price = self.prices.get(request.symbol)
        if reason is not None or price is None or not is_usable(price):
            result = replace(result, status="Cancelled", message=f"rejected: {reason or 'no usable price'}")
        else:
            result = self._fill(account, result, price)
        self._results[order_id] = result
        if not result.is_done:
            account.open_orders[order_id] = result
        return result

    def _fill(self, account: SimulatedAccount, result: OrderResult, price: float) -> OrderResult:
        shares = result.quantity * self.partial_fills.get(result.symbol, 1.0)
        if float(result.quantity).is_integer():
            shares = math.floor(shares)
        signed = shares if result.action == "BUY" else -shares
        account.positions[result.symbol] = account.positions.get(result.symbol, 0.0) + signed
        if account.positions[result.symbol] == 0:
            del account.positions[result.symbol]
        account.cash -= signed * price
        if shares:
            account.executions.append(
                BrokerExecution(
                    result.symbol,
                    self._con_id(result.symbol),
                    result.action,
                    shares,
                    price,
                    self.clock(),
                    f"sim.{result.order_id}.{len(account.executions) + 1}",
                    perm_id=result.perm_id,
                    order_ref=result.order_ref,
                    order_id=result.order_id,
                )
            )
        status = "Filled" if shares >= result.quantity else "Submitted"
        return replace(result, status=status, filled_quantity=shares, avg_fill_price=price if shares else 0.0)

    async def wait_for_fills(
        self, account_id: str, order_ids: Sequence[int], timeout_seconds: float
    ) -> list[OrderResult]:
        await self._pause()
        unknown = [i for i in order_ids if i not in self._results]
        if unknown:
            raise BrokerError(f"account {account_id}: orders {unknown} were never placed")
        results = [self._results[i] for i in order_ids]
        if not all(r.is_done for r in results):
            # Nothing more will fill in memory: the remainder would wait the whole timeout.
            await asyncio.sleep(timeout_seconds)
        return results


def _as_open_order(result: OrderResult) -> OpenOrder:
    return OpenOrder(
        order_id=result.order_id,
        perm_id=result.perm_id,
        client_id=SIMULATED_CLIENT_ID,
        symbol=result.symbol,
        action=result.action,
        quantity=result.quantity,
        order_type=result.order_type,
        status=result.status,
        order_ref=result.order_ref,
        filled_quantity=result.filled_quantity,
    )
