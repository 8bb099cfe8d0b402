"""Whether this process can reach IB Gateway, as its last connection attempts found, for its heartbeat.

`idle`: no connection was needed yet; `connected`: the last attempt (on any of the process's
connections) succeeded; `unreachable`: it failed to connect (refused, timed out, not logged in), with
the reason and since when the streak of failures began. A client id in use is not unreachability
(the gateway answered). The heartbeat carries it (`gateway` in the processor's details), /health
judges it and the notifier tells operators when it lasts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

GatewayState = Literal["idle", "connected", "unreachable"]


@dataclass
class GatewayStatus:
    """The process's view of IB Gateway; `since` is a Unix time."""

    state: GatewayState = "idle"
    since: float | None = None
    reason: str | None = None

    def connected(self) -> None:
        if self.state != "connected":
            self.state, self.since = "connected", time.time()
        self.reason = None

    def unreachable(self, reason: str) -> None:
        if self.state != "unreachable":
            self.state, self.since = "unreachable", time.time()
        self.reason = reason

    def report(self) -> dict[str, Any]:
        """The heartbeat's `gateway` detail."""
        return {"state": self.state, "since": self.since, "reason": self.reason}
