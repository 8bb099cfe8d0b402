"""Run the fake on an event loop of its own in a background thread, for code that is not async."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from tests.fakes.ably.server import THREADSAFE_TIMEOUT_S, FakeAblyServer


class FakeAblyThread:
    """Owns a thread running `server`; drive the server through its `*_threadsafe` methods.

    with FakeAblyThread() as ably:
        ably.publish_threadsafe("channel", "trigger", {"exec": "rebalance"})
    """

    def __init__(self, server: FakeAblyServer | None = None) -> None:
        self.server = server if server is not None else FakeAblyServer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-ably", daemon=True)

    def start(self) -> FakeAblyServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(THREADSAFE_TIMEOUT_S)
        return self.server

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(THREADSAFE_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREADSAFE_TIMEOUT_S)
            self._loop.close()

    def __enter__(self) -> FakeAblyServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
