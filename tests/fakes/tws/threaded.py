"""Run the fake TWS on an event loop of its own in a background thread, for code that is not async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from tests.fakes.tws.account import TwsState
from tests.fakes.tws.server import FakeTws

THREADSAFE_TIMEOUT_S = 10.0
T = TypeVar("T")


class FakeTwsThread:
    """Owns a thread running a `FakeTws`; reach its state only through `call`.

    with FakeTwsThread(state) as tws:
        tws.call(lambda s: s.set_price("AAPL", 190.0))
        orders = tws.call(lambda s: list(s.received_orders))
    """

    def __init__(self, server: FakeTws | None = None) -> None:
        self.server = server if server is not None else FakeTws()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-tws", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> FakeTwsThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(THREADSAFE_TIMEOUT_S)
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(THREADSAFE_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREADSAFE_TIMEOUT_S)
            self._loop.close()

    def call(self, fn: Callable[[TwsState], T]) -> T:
        """Run `fn(state)` on the server's loop and return its result."""

        async def run() -> T:
            return fn(self.server.state)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(THREADSAFE_TIMEOUT_S)

    def drop_connections(self) -> None:
        self._loop.call_soon_threadsafe(self.server.drop_connections)

    def __enter__(self) -> FakeTwsThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
