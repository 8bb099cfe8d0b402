"""One allocation request per trigger and channel, however many accounts follow the channel.

A trigger (an Ably message, or one event added by hand) turns into one event per account that
follows its channel; 200 accounts on one strategy would otherwise ask the allocation API the same
question 200 times within a second. `SharedFetches` makes the events of one trigger share one
request: the first asks, the others wait for the same answer (single flight), and the answer is
kept for `ttl_seconds` (60 by default: the events of a trigger run within seconds of each other).
The caller keys by trigger *and attempt*, so a retry asks again and hears an API fixed meanwhile.
Only answers are kept, never failures. The answer kept is the decoded body: every use validates it
again (`parse_allocation_response`), so nothing is traded on a weight that was not checked for that
run.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

DEFAULT_TTL_SECONDS = 60.0
MAX_ENTRIES = 1024


@dataclass(frozen=True)
class _Kept:
    value: object
    at: float


class SharedFetches:
    """Single-flight fetches with a short memory, keyed by (channel, trigger)."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._running: dict[Hashable, asyncio.Future[object]] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[object]]) -> object:
        """The kept answer for `key`, the answer of the fetch already running for it, or a new fetch's."""
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept.at < self.ttl_seconds:
            return kept.value
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(fetch())
            self._running[key] = running
            running.add_done_callback(lambda done: self._settle(key, done))
        # A waiter cancelled (its run stopped) does not cancel the fetch the others wait for.
        return await asyncio.shield(running)

    def _settle(self, key: Hashable, done: asyncio.Future[object]) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._kept[key] = _Kept(done.result(), self._clock())
        self._kept.move_to_end(key)
        while len(self._kept) > self._max_entries:
            self._kept.popitem(last=False)
