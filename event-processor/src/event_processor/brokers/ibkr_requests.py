"""Requests that run together on one ib_async connection, and waits that wake when IB says something.

ib_async files most answers under the request's id, so such requests (contract details, market
data, executions, the account summary as `ibkr_account_values` keys it) may be in flight together.
A few answers are filed under a fixed name instead, one per connection: "positions", "openOrders",
"currentTime". Two of those in flight at once would share one slot and one caller would never be
answered, so `SharedRequest` lets one of them out at a time, and callers that asked while it was in
flight share the next one: an answer is never older than the moment its caller asked (a request sent
earlier could miss a fill that came in between).

`wakeup_on` turns ib_async's events (order status, executions, ticks) into an `asyncio.Event`, so a
wait that re-checks a condition runs when something arrives instead of on a polling tick.
`PositionChanges` does the same for an account's positions: IB streams a position whose quantity
changed to every connection (ib_async subscribes with reqPositions on connecting), so a wait for the
positions to show a fill asks again when one comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Generic, TypeVar

from ib_async import IB, Position

T = TypeVar("T")


class SharedRequest(Generic[T]):
    """One request of a kind at a time; callers that asked during it share the next answer."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[T] | None = None

    async def get(self, send: Callable[[], Awaitable[T]]) -> T:
        """The answer to a request sent after this call began (`send` sends it and awaits the answer)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._run(send))
            self._next.add_done_callback(_retrieve)
        # shield: a caller that gives up does not cancel the request the others wait for
        return await asyncio.shield(self._next)

    async def _run(self, send: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:  # the one before it has been answered
            self._next = None  # callers from now on wait for the request after this one
            return await send()


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Every waiter may have given up; read the outcome so asyncio does not log it as never retrieved.
    if not future.cancelled():
        future.exception()


@contextmanager
def wakeup_on(*events: Any) -> Iterator[asyncio.Event]:
    """An `asyncio.Event` set each time one of ib_async's `events` fires, for as long as the block runs.

    The events are eventkit `Event`s (untyped in ib_async 2.1), hence `Any`."""
    woken = asyncio.Event()

    def wake(*_: object) -> None:
        woken.set()

    for event in events:
        event += wake
    try:
        yield woken
    finally:
        for event in events:
            event -= wake


async def woken_or_timeout(woken: asyncio.Event, seconds: float) -> None:
    """Wait until `woken` is set or `seconds` pass; clear it for the next wait."""
    with suppress(TimeoutError):
        await asyncio.wait_for(woken.wait(), max(seconds, 0.0))
    woken.clear()


class PositionChanges:
    """Wakes an account's waits when IB sends one of its positions."""

    def __init__(self) -> None:
        self._arrived: dict[str, asyncio.Event] = {}

    def watch(self, ib: IB) -> IB:
        """`ib`, telling this of every position it receives."""
        ib.positionEvent += self._on_position
        return ib

    def _on_position(self, position: Position) -> None:
        self._arrived.setdefault(position.account, asyncio.Event()).set()

    async def wait(self, account_id: str, seconds: float) -> None:
        """Until a position of the account arrives, or `seconds` pass. Positions that came before the
        wait (the answer to the caller's own request) do not count."""
        arrived = self._arrived.setdefault(account_id, asyncio.Event())
        arrived.clear()
        await woken_or_timeout(arrived, seconds)
