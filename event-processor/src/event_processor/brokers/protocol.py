"""The broker seam: `ReadOnlyBroker` reads an account, `Broker` also trades in it.

Dry-run commands get a `ReadOnlyBrokerView`, which has the read methods and nothing else, so a dry run
cannot place or cancel an order by construction (not by a flag someone could forget to check).
Every method is async and raises `BrokerError` with a message that says what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from event_processor.brokers.models import (
    AccountValues,
    BrokerExecution,
    BrokerPosition,
    Listing,
    OpenOrder,
    OrderRequest,
    OrderResult,
)


@runtime_checkable
class ReadOnlyBroker(Protocol):
    """Reads: account values, positions, listings, prices, open orders, and the day-trade facts."""

    async def get_account_values(self, account_id: str) -> AccountValues:
        """NetLiquidation and TotalCashValue of the account."""
        ...

    async def get_positions(self, account_id: str) -> list[BrokerPosition]:
        """Every non-zero position of the account, once per contract, with the contract's identity."""
        ...

    async def get_listings(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, Listing]:
        """The US listing (SMART, USD) of each stock symbol; a symbol that has none is left out.
        `account_id`: the account whose run asks (its reads may go through the run's connection)."""
        ...

    async def get_prices(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, float]:
        """A usable price per stock symbol; a symbol without one is left out (never 0 or NaN).
        `account_id`: the account whose run asks (its reads may go through the run's connection)."""
        ...

    async def get_open_orders(self, account_id: str) -> list[OpenOrder]:
        """Orders of the account still working at the broker, whichever client placed them."""
        ...

    async def wait_for_position_change(self, account_id: str, seconds: float) -> None:
        """Return when the broker tells of a change in the account's positions, or after `seconds`
        (a wait for the positions to show fills asks again then, instead of on a fixed tick)."""
        ...

    async def get_todays_executions(self, account_id: str) -> list[BrokerExecution]:
        """The account's executions of the current US trading day (a New York date, by the broker's
        clock), as far as the broker lets us see them."""
        ...

    async def get_day_trades_remaining(self, account_id: str) -> int | None:
        """The day trades the pattern-day-trader rule leaves the account today (IB's
        `DayTradesRemaining`): -1 when nothing limits it, None when the broker does not say."""
        ...


@runtime_checkable
class Broker(ReadOnlyBroker, Protocol):
    """Reads and writes."""

    async def reserve(self, account_id: str) -> None:
        """A mutating run of the account begins: open what it trades through (IBKR: the account's
        trading connection, waiting for a free one), so its reads go through it too. `release` ends it."""
        ...

    async def cancel_open_orders(self, account_id: str, timeout_seconds: float) -> list[OpenOrder]:
        """Cancel every open order of the account and wait until the broker confirms; return them.

        It returns once the positions can be read as they are: nothing is open, and an order that
        filled a moment ago (an earlier run's) shows in them.

        Raises `BrokerError` when some are still open after `timeout_seconds`.
        """
        ...

    async def place_orders(
        self, account_id: str, orders: Sequence[OrderRequest], order_ref: str
    ) -> list[OrderResult]:
        """Send the orders (each tagged with `order_ref`) and return them as submitted."""
        ...

    async def wait_for_fills(
        self, account_id: str, order_ids: Sequence[int], timeout_seconds: float
    ) -> list[OrderResult]:
        """Wait until every order is done or the timeout passes; return their latest state.

        A timeout is not an error: the results say which orders did not fill.
        """
        ...

    async def release(self, account_id: str) -> None:
        """The account's mutating run ended: free what was opened for it (its trading connection)."""
        ...

    async def close(self) -> None:
        """Release the connection (the broker may be used again afterwards: it reconnects)."""
        ...


class ReadOnlyBrokerView:
    """The read half of a broker, for dry runs: it has no place, cancel or wait attribute at all."""

    __slots__ = ("_broker",)

    def __init__(self, broker: ReadOnlyBroker) -> None:
        self._broker = broker

    async def get_account_values(self, account_id: str) -> AccountValues:
        return await self._broker.get_account_values(account_id)

    async def get_positions(self, account_id: str) -> list[BrokerPosition]:
        return await self._broker.get_positions(account_id)

    async def get_listings(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, Listing]:
        return await self._broker.get_listings(symbols, account_id)

    async def get_prices(self, symbols: Sequence[str], account_id: str | None = None) -> dict[str, float]:
        return await self._broker.get_prices(symbols, account_id)

    async def get_open_orders(self, account_id: str) -> list[OpenOrder]:
        return await self._broker.get_open_orders(account_id)

    async def wait_for_position_change(self, account_id: str, seconds: float) -> None:
        await self._broker.wait_for_position_change(account_id, seconds)

    async def get_todays_executions(self, account_id: str) -> list[BrokerExecution]:
        return await self._broker.get_todays_executions(account_id)

    async def get_day_trades_remaining(self, account_id: str) -> int | None:
        return await self._broker.get_day_trades_remaining(account_id)
