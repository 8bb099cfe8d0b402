"""IB's pacing: at most 50 messages a second per connection, counted where they arrive.

IB refuses (error 100, and drops) a connection's messages beyond 50 in any second at the gateway.
ib_async's throttle counts where messages leave: at most `MaxRequests` in any `RequestsInterval`. Its
default (45 in 1 s) lets a burst that reaches the gateway late share one of its seconds with the next
burst, up to 90. A gateway second holds what left within that second plus the spread of the messages'
delays; so `pace` lets at most 48 leave in any 1.25 s, and any gateway second holds at most 48 while
the delays differ by less than 0.25 s. A run's burst (its quotes, its sells) still leaves at once.

`send_room` tells how many messages a connection could send now without waiting, so a run can put
its market data requests where they leave soonest.
"""

from __future__ import annotations

import asyncio

from ib_async import IB

MESSAGES_PER_WINDOW = 48
PACING_WINDOW_SECONDS = 1.25


def pace(ib: IB) -> IB:
    """`ib` with its request throttle under IB's pacing limit."""
    ib.client.MaxRequests = MESSAGES_PER_WINDOW
    # Seconds, compared with loop.time(); ib_async declares the attribute with an int default (1).
    ib.client.RequestsInterval = PACING_WINDOW_SECONDS  # type: ignore[assignment]
    return ib


def send_room(ib: IB) -> int:
    """Messages `ib` could send now without waiting (negative: that many are already held back)."""
    client = ib.client
    if not client.MaxRequests:
        return MESSAGES_PER_WINDOW  # unthrottled
    now = asyncio.get_running_loop().time()
    recent = sum(1 for sent in client._timeQ if now - sent <= client.RequestsInterval)
    return int(client.MaxRequests) - recent - len(client._msgQ)
