"""`OrderGuard`: what a live run does around each batch of orders it places.

Before a batch: check that the run may still act (its lease fence, see `LeaseFence`) and record the
orders' intent, so an order the gateway receives is always in the history even if the process dies
the next instant; check the fence again after that write. After the batch: record the broker's ids.
When the fills are in (or the wait ended): record them. Once the run has cancelled the account's
open orders, settle what earlier runs of the event left open (event_processor.order_settlement).
A wait is not bounded here: the fence moves on with every confirmed renewal, and the worker cancels
the run the moment it closes, so a run that lost its lease stops waiting and places nothing more.

`UNGUARDED` does none of that (benchmarks and tests of the engine alone).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from event_processor.brokers.models import BrokerExecution, OrderRequest, OrderResult

# Reads the account's executions of the day (on the run's connection, which sees every earlier run's).
ReadExecutions = Callable[[], Awaitable[Sequence[BrokerExecution]]]


class OrderGuard(Protocol):
    """Record orders as they are placed; refuse to place once the run's lease may have expired."""

    def check(self, action: str) -> None:
        """Raise unless the run may still `action` (cancel or place orders)."""
        ...

    async def before_placing(self, requests: Sequence[OrderRequest]) -> None:
        """Raise (placing nothing) unless the run may still trade; record the intent of `requests`."""
        ...

    async def placed(self, orders: Sequence[OrderResult]) -> None:
        """The batch was sent: `orders` are the requests' results, in the same order."""
        ...

    async def settled(self, orders: Sequence[OrderResult]) -> None:
        """The latest state of orders placed earlier (fills, cancels)."""
        ...

    async def settle_earlier(self, executions: ReadExecutions) -> None:
        """The account's open orders are cancelled: record what earlier runs of the event left open
        did, from the day's executions (read only when something is left open). Never raises."""
        ...


class _Unguarded:
    def check(self, action: str) -> None:
        return None

    async def before_placing(self, requests: Sequence[OrderRequest]) -> None:
        return None

    async def placed(self, orders: Sequence[OrderResult]) -> None:
        return None

    async def settled(self, orders: Sequence[OrderResult]) -> None:
        return None

    async def settle_earlier(self, executions: ReadExecutions) -> None:
        return None


UNGUARDED: OrderGuard = _Unguarded()
