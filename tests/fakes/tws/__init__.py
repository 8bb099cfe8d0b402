"""A loopback IB Gateway / TWS that the real `ib_async` client connects to (see server.py).

It is as strict as IB by default: positions repeat within one answer and lag fills, every listing has
its conId, exchange and currency, and account values come in the account's base currency. README.md
here lists each habit, its knob and the IB document or issue behind it.
"""

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
