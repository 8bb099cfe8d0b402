"""When an event runs again: the one place that decides a failure's class and its retry rule.

`classify` puts an error in one of the three failure classes (rebalancer_shared.failures); the
`RetryPolicy` turns the class into how the event waits (`Wait`: its state and due time):

====================================  ================  ===========================================
the error                             class             the event waits until
====================================  ================  ===========================================
Redis/PostgreSQL/HTTP blips, IB       transient         `retry_delay_seconds` from now
connection lost or not logged in,
timeouts, HTTP 5xx/429, anything
not named below
market closed, half day over (our     market_closed     the next allowed window (calendar), not
calendar or IB's hours), the                            before IB's next open when IB named it
pattern-day-trader guard deferring
order rejected by IB (201 no          needs_attention   the next session's window, or at once when
permission, insufficient funds, PDT;                    an operator asks (`POST /queue/events/{id}/
10243 fractional; 200/203 no such                       retry`, `rebalancer queue retry ID`)
contract), unknown symbol, invalid
allocations (HTTP 4xx, bad weights),
orders no API client can cancel, an
account not configured or not
supported (non-USD)
====================================  ================  ===========================================

Before a run, `gate` keeps a live rebalance from starting outside the allowed window: the event is
scheduled for the next one without a run (nothing counted as a failure). Read-only commands and
cancel-orders run at any time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from event_processor.allocations import AllocationError
from event_processor.allocations.weights import TargetWeightsError
from event_processor.execution import ExecutionFailed
from event_processor.trading_calendar import NEW_YORK, AlwaysOpen, TradingCalendar
from rebalancer_shared.config import OrderSettings, ProcessingSettings
from rebalancer_shared.errors import ConfigError, ServerUnavailableError
from rebalancer_shared.events import Event
from rebalancer_shared.failures import FailureClass, NeedsAttention, WaitForSession
from rebalancer_shared.queue import EventState, Wait

# IB error codes on an order that no retry fixes by itself: 200 no security definition, 201 order
# rejected (no trading permission, insufficient funds, pattern day trader, ...), 203 security not
# allowed for this account, 10243 fractional size through the API.
ATTENTION_IB_CODES = frozenset({200, 201, 203, 10243})
_IB_CODE = re.compile(r"^IB error (\d+):")
_ATTENTION_ERRORS: tuple[type[BaseException], ...] = (NeedsAttention, TargetWeightsError, ConfigError)
_STATE_OF = {
    FailureClass.TRANSIENT: EventState.RETRYING,
    FailureClass.MARKET_CLOSED: EventState.SCHEDULED,
    FailureClass.NEEDS_ATTENTION: EventState.NEEDS_ATTENTION,
}


class MarketCalendar(Protocol):
    """What the policy asks of a calendar (`TradingCalendar`, or `AlwaysOpen`)."""

    def can_trade(self, moment: datetime) -> bool: ...
    def next_allowed(self, moment: datetime) -> datetime: ...
    def next_session_open(self, moment: datetime) -> datetime: ...
    def describe(self, moment: datetime) -> str: ...


def rejected_orders(failed: ExecutionFailed) -> list[str]:
    """The orders of a failed run that IB refused for a reason no retry fixes, described."""
    refused = []
    for order in failed.report.orders:
        match = _IB_CODE.match(order.message or "")
        if match and int(match.group(1)) in ATTENTION_IB_CODES:
            refused.append(f"{order.action} {order.quantity:g} {order.symbol}: {order.message}")
    return refused


def classify(exc: BaseException) -> FailureClass:
    """The failure class of an error (see the module docstring's table)."""
    if isinstance(exc, WaitForSession):
        return FailureClass.MARKET_CLOSED
    if isinstance(exc, _ATTENTION_ERRORS):
        return FailureClass.NEEDS_ATTENTION
    if isinstance(exc, AllocationError) and not isinstance(exc, ServerUnavailableError):
        return FailureClass.NEEDS_ATTENTION  # the API answered, with something we must not trade on
    if isinstance(exc, ExecutionFailed) and rejected_orders(exc):
        return FailureClass.NEEDS_ATTENTION
    return FailureClass.TRANSIENT


@dataclass(frozen=True)
class Verdict:
    """How an event that did not run to success waits, and the text its history keeps."""

    wait: Wait
    error: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RetryPolicy:
    """The retry rule of each failure class, over a market calendar and a clock."""

    calendar: MarketCalendar
    retry_delay_seconds: float
    clock: Callable[[], datetime] = _utc_now

    @classmethod
    def from_settings(
        cls, processing: ProcessingSettings, orders: OrderSettings | None = None
    ) -> RetryPolicy:
        calendar: MarketCalendar = AlwaysOpen()
        if processing.market_calendar == "nyse":
            calendar = TradingCalendar(
                open_delay=timedelta(seconds=processing.market_open_delay_seconds),
                close_buffer=timedelta(seconds=processing.market_close_buffer_seconds),
                extended_hours=(orders or OrderSettings()).extended_hours_enabled,
            )
        return cls(calendar, processing.retry_delay_seconds)

    @classmethod
    def always_open(cls, retry_delay_seconds: float) -> RetryPolicy:
        return cls(AlwaysOpen(), retry_delay_seconds)

    def gate(self, event: Event) -> Verdict | None:
        """None when the event may run now; else how it waits (a live rebalance outside the window)."""
        if not event.exec_command.places_orders:
            return None
        now = self.clock()
        if self.calendar.can_trade(now):
            return None
        due = self.calendar.next_allowed(now)
        why = f"not run: {self.calendar.describe(now)}; a live rebalance waits for it"
        wait = Wait(EventState.SCHEDULED, FailureClass.MARKET_CLOSED, due_at=due, attempted=False)
        return Verdict(wait, why)

    def live_run_note(self) -> str:
        """When a live rebalance triggered now would run (print-rebalance says it)."""
        now = self.clock()
        if self.calendar.can_trade(now):
            return f"a live rebalance would run now ({self.calendar.describe(now)})"
        due = self.calendar.next_allowed(now).astimezone(NEW_YORK)
        return f"a live rebalance would wait until {due:%Y-%m-%d %H:%M %Z} ({self.calendar.describe(now)})"

    def after(self, exc: BaseException, error: str) -> Verdict:
        """How the event of a run that failed with `exc` waits."""
        failure_class = classify(exc)
        wait = Wait(_STATE_OF[failure_class], failure_class, delay_seconds=self.retry_delay_seconds)
        if failure_class is FailureClass.MARKET_CLOSED:
            wait = _with_due(wait, self._next_session(exc))
        elif failure_class is FailureClass.NEEDS_ATTENTION:
            wait = _with_due(wait, self.calendar.next_session_open(self.clock()))
            error = f"needs attention: {error}"
        return Verdict(wait, error)

    def _next_session(self, exc: BaseException) -> datetime:
        """The next allowed moment after a market-closed failure; never now (no loop on a disagreement
        between our calendar and IB's hours: then the next session by the calendar)."""
        now = self.clock()
        not_before = getattr(exc, "not_before", None)
        moment = max(now, not_before) if isinstance(not_before, datetime) else now
        due = self.calendar.next_allowed(moment)
        if due <= now:
            due = self.calendar.next_session_open(now)
        return due


def _with_due(wait: Wait, due: datetime) -> Wait:
    return Wait(wait.state, wait.failure_class, due_at=due, attempted=wait.attempted)
