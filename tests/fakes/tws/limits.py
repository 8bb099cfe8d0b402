"""What a real IB Gateway rations: market data lines per login, and messages per second per connection.

- `MarketDataLines`: every snapshot or subscription holds one line of the login until it ends or is
  cancelled; a request beyond `TwsState.market_data_lines` is refused with error 101.
- `Pacer`: a sliding one-second window of the messages a connection sent; one over
  `TwsState.max_messages_per_second` is refused with error 100 and not processed.

Both read their limit from the state at each call, so a test may change it while the fake runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from tests.fakes.tws.account import TwsState

MAX_TICKERS_TEXT = "Max number of tickers has been reached"
PACING_TEXT = "Max rate of messages per second has been exceeded."
PACING_WINDOW_SECONDS = 1.0


class MarketDataLines:
    """The lines in use across every connection of the login, keyed by (connection, request id)."""

    def __init__(self, state: TwsState) -> None:
        self._state = state
        self._held: set[tuple[Hashable, int]] = set()

    @property
    def in_use(self) -> int:
        return len(self._held)

    def take(self, owner: Hashable, req_id: int) -> bool:
        """Hold a line for the request; False when every line is in use (IB: error 101)."""
        if len(self._held) >= self._state.market_data_lines:
            return False
        self._held.add((owner, req_id))
        return True

    def holds(self, owner: Hashable, req_id: int) -> bool:
        return (owner, req_id) in self._held

    def release(self, owner: Hashable, req_id: int) -> bool:
        """Give the request's line back; False when it held none (ended or cancelled before)."""
        key = (owner, req_id)
        if key not in self._held:
            return False
        self._held.discard(key)
        return True

    def release_all(self, owner: Hashable) -> None:
        """A closed connection's subscriptions end with it."""
        self._held = {key for key in self._held if key[0] != owner}


class Pacer:
    """One connection's message rate: `admit(t)` is False for a message over the limit."""

    def __init__(self, state: TwsState) -> None:
        self._state = state
        self._times: deque[float] = deque()

    def admit(self, at: float) -> bool:
        limit = self._state.max_messages_per_second
        if limit is None:
            return True
        while self._times and at - self._times[0] >= PACING_WINDOW_SECONDS:
            self._times.popleft()
        if len(self._times) >= limit:
            return False
        self._times.append(at)
        return True
