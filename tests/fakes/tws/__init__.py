"""A loopback IB Gateway / TWS that the real `ib_async` client connects to (see server.py)."""

from tests.fakes.tws.account import (
    FakeOrder,
    FakePosition,
    FakeQuote,
    FillRecord,
    ReceivedCancel,
    ReceivedOrder,
    TwsState,
)
from tests.fakes.tws.server import FakeTws, serve
from tests.fakes.tws.threaded import FakeTwsThread

__all__ = [
    "FakeOrder",
    "FakePosition",
    "FakeQuote",
    "FakeTws",
    "FakeTwsThread",
    "FillRecord",
    "ReceivedCancel",
    "ReceivedOrder",
    "TwsState",
    "serve",
]
