"""A loopback Ably realtime server that the real `ably` SDK connects to (see server.py)."""

from tests.fakes.ably.history import StoredMessage
from tests.fakes.ably.server import FakeAblyServer
from tests.fakes.ably.threaded import FakeAblyThread

__all__ = ["FakeAblyServer", "FakeAblyThread", "StoredMessage"]
