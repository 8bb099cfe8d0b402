"""What the console's pages show, read through the same Python the API routes call (the health check,
the queue, the history store, the weights) and shaped for the templates.

The plan of a run is the planner's `Plan.to_dict()` kept as JSON in the history; it is read here
field by field into small dataclasses, tolerating a plan stored before a field existed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy.exc

from management_service.account_view import account_state
from management_service.health import GatewayReport, check_health_and_stats, describe_error, gateway_reports
from management_service.models import Drift, HealthResponse, PlanWeights, RunRecordResponse, WeightLine
from management_service.services import Services
from management_service.ui.chart import Chart, activity_chart
from management_service.ui.session_store import REDIS_UNAVAILABLE
from management_service.weights import after_fills, plan_weights, weight_lines
from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Command, ExecutionMode
from rebalancer_shared.queue import EventState, QueuedEventView, QueueStats
from rebalancer_shared.queue.models import WAITING_STATES
from rebalancer_shared.store import EventFilter, EventSummary, ListedOrder, OrderFilter, RunView
from rebalancer_shared.store.activity import hourly_activity
from rebalancer_shared.transient import is_transient

# Live events the console reads from the queue at once (the API's /queue/events allows 1000 too).
LIVE_EVENTS_SHOWN = 1000
RECENT_ROWS = 10


@dataclass(frozen=True)
class Overview:
    """Counts now, the health verdict with heartbeats, IB Gateway and the oldest waiting event."""

    health: HealthResponse
    stats: QueueStats | None
    oldest_waiting: QueuedEventView | None

    @property
    def gateways(self) -> list[GatewayReport]:
        return gateway_reports(self.health.components.heartbeats)

    def waited_seconds(self, now: datetime) -> float | None:
        """How long ago the oldest waiting event was accepted."""
        event = self.oldest_waiting.event if self.oldest_waiting else None
        return max(0.0, (now - event.created_at).total_seconds()) if event else None


async def oldest_waiting(services: Services, stats: QueueStats) -> QueuedEventView | None:
    """The oldest live event not being processed (queued, retrying, scheduled or needs attention).

    Live events are listed oldest first; at most `processing_count` of them are processing (one per
    busy worker), so the first `processing_count + 1` hold the answer when there is one.
    """
    for view in await services.queue.list_events(stats.processing_count + 1):
        if view.state is not EventState.PROCESSING:
            return view
    return None


async def overview(services: Services) -> Overview:
    """The health check (which reads Redis, the counters and PostgreSQL), then the oldest waiting
    event; the counters are the ones the health check read."""
    health, stats = await check_health_and_stats(services.queue, services.store, services.health_policy)
    if stats is None:
        return Overview(health, None, None)
    return Overview(health, stats, await oldest_waiting(services, stats))


@dataclass(frozen=True)
class Activity:
    """The chart, or why it cannot be drawn now."""

    chart: Chart | None
    unavailable: str | None = None


async def activity(services: Services, now: datetime | None = None) -> Activity:
    """Events per hour over the last 24 hours, from the history (PostgreSQL down: the reason)."""
    try:
        hours = await hourly_activity(services.store.engine, now or datetime.now(UTC))
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        if not is_transient(exc):
            raise
        return Activity(None, f"PostgreSQL is down: {describe_error(exc)}")
    return Activity(activity_chart(hours))


def unknown_choice(name: str, value: str, allowed: Sequence[str]) -> str | None:
    """Why a filter's value is refused (not one of `allowed`), or None when it is one or empty."""
    if not value or value in allowed:
        return None
    return f"unknown {name} {value!r}: choose one of {', '.join(allowed)} (or leave it empty for any)"


@dataclass(frozen=True)
class QueueFilter:
    """The queue page's filters; an empty field matches everything. `search` matches the start of an
    event id, or an account or command containing it (case-insensitive)."""

    state: str = ""
    account: str = ""
    command: str = ""
    search: str = ""

    def problems(self) -> list[str]:
        """Why the filters cannot be applied (an unknown state or command), or nothing."""
        found = (
            unknown_choice("state", self.state, [s.value for s in EventState]),
            unknown_choice("command", self.command, [c.value for c in Command]),
        )
        return [p for p in found if p]

    def matches(self, view: QueuedEventView) -> bool:
        event = view.event
        needle = self.search.lower()
        checks = (
            not self.state or view.state.value == self.state,
            not self.account or event.account_id == self.account,
            not self.command or event.exec_command.value == self.command,
            not needle
            or str(event.event_id).startswith(needle)
            or needle in event.account_id.lower()
            or needle in event.exec_command.value,
        )
        return all(checks)

    def query(self) -> str:
        """The filters as a query string (for the live part's address)."""
        pairs = {"state": self.state, "account": self.account, "command": self.command, "q": self.search}
        return urlencode({k: v for k, v in pairs.items() if v})


@dataclass(frozen=True)
class QueueListing:
    """The live events a queue page shows. `capped`: the queue holds more than LIVE_EVENTS_SHOWN
    events and only the oldest were filtered. `searched_id`: the search was a whole event id, looked
    up directly (found however deep in the queue)."""

    events: list[QueuedEventView]
    capped: bool = False
    searched_id: uuid.UUID | None = None


async def live_events(services: Services, where: QueueFilter = QueueFilter()) -> QueueListing:
    """The live events, oldest first, that match `where`."""
    searched = parse_event_id(where.search)
    if searched is not None:
        view = await services.queue.get(str(searched))
        others = replace(where, search="")
        return QueueListing([view] if view and others.matches(view) else [], searched_id=searched)
    found = await services.queue.list_events(LIVE_EVENTS_SHOWN + 1)
    shown = [v for v in found[:LIVE_EVENTS_SHOWN] if where.matches(v)]
    return QueueListing(shown, capped=len(found) > LIVE_EVENTS_SHOWN)


# --- a run's plan ------------------------------------------------------------------------------------


def _rows(plan: Mapping[str, Any], part: str) -> list[Mapping[str, Any]]:
    rows = plan.get(part)
    return [row for row in rows if isinstance(row, Mapping)] if isinstance(rows, list) else []


@dataclass(frozen=True)
class PlanView:
    """A plan as tables: its orders, skipped trades, withheld orders, weights, equity and metrics."""

    orders: list[Mapping[str, Any]]
    skipped: list[Mapping[str, Any]]
    withheld: list[Mapping[str, Any]]
    weights: list[WeightLine]
    equity: Mapping[str, Any]
    metrics: Mapping[str, Any]


def plan_view(plan: Mapping[str, Any] | None) -> PlanView | None:
    """The tables of a stored plan, or None for a run that planned nothing."""
    if not plan:
        return None
    before, target, after = (plan_weights(plan, p) for p in ("current", "targets", "projected"))
    equity = plan.get("equity_info")
    metrics = plan.get("metrics")
    return PlanView(
        orders=_rows(plan, "orders"),
        skipped=_rows(plan, "skipped"),
        withheld=_rows(plan, "withheld"),
        weights=weight_lines(before, target, after),
        equity=equity if isinstance(equity, Mapping) else {},
        metrics=metrics if isinstance(metrics, Mapping) else {},
    )


def filled_weights(run: RunRecordResponse) -> list[WeightLine]:
    """A live run's weights after its fills, at the prices they got, against its plan's targets
    (weights.after_fills, as its notification tells them); [] with no fill or no weights to start from."""
    plan = run.plan or {}
    total = float((run.equity_info or {}).get("total_equity") or 0.0)
    before, target = plan_weights(plan, "current"), plan_weights(plan, "targets")
    fills = [
        (o.symbol, o.action, o.filled_quantity, o.avg_fill_price) for o in run.orders if o.filled_quantity
    ]
    if run.execution_mode != ExecutionMode.LIVE or not fills or total <= 0 or not (before or target):
        return []
    return weight_lines(before, target, after_fills(before, fills, total))


def buy_plan_view(result: Mapping[str, Any] | None) -> PlanView | None:
    """A live rebalance's re-plan of the buys after its sells filled, when it made one."""
    details = (result or {}).get("details")
    buy_plan = details.get("buy_plan") if isinstance(details, Mapping) else None
    return plan_view(buy_plan) if isinstance(buy_plan, Mapping) else None


# --- accounts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    """An account as the console shows it: settings, last run, drift, what waits for it (None: Redis
    is unavailable, so unknown); and, on its own page, its newest plan's weights, recent events and
    orders."""

    account: Account
    last_run: RunView | None
    drift: Drift | None
    waiting: list[QueuedEventView] | None
    last_plan: PlanWeights | None = None
    recent_events: list[EventSummary] = field(default_factory=list)
    recent_orders: list[ListedOrder] = field(default_factory=list)


async def _live(services: Services) -> list[QueuedEventView] | None:
    """The live events (oldest LIVE_EVENTS_SHOWN), or None when Redis does not answer: the history
    part of an account page still renders."""
    try:
        return await services.queue.list_events(LIVE_EVENTS_SHOWN)
    except REDIS_UNAVAILABLE:
        return None


def _of_account(events: Sequence[QueuedEventView] | None, account_id: str) -> list[QueuedEventView] | None:
    return None if events is None else [v for v in events if v.event.account_id == account_id]


async def accounts(services: Services) -> list[AccountView]:
    """Every configured account, in the accounts file's order."""
    live = await _live(services)
    now = datetime.now(UTC)
    views = []
    for account_id, configured in services.accounts.items():
        state = await account_state(services.store, account_id, now)
        views.append(AccountView(configured, state.last_run, state.drift, _of_account(live, account_id)))
    return views


async def account(services: Services, account_id: str) -> AccountView | None:
    """One account with its newest plan, recent events and recent orders; None when not configured."""
    configured = services.accounts.get(account_id)
    if configured is None:
        return None
    state = await account_state(services.store, account_id, datetime.now(UTC))
    return AccountView(
        account=configured,
        last_run=state.last_run,
        drift=state.drift,
        waiting=_of_account(await _live(services), account_id),
        last_plan=state.last_plan,
        recent_events=await services.store.list_events(EventFilter(account_id=account_id), RECENT_ROWS),
        recent_orders=await services.store.list_orders(OrderFilter(account_id=account_id), 2 * RECENT_ROWS),
    )


def is_waiting(state: str) -> bool:
    """True for the states an operator may retry now."""
    return state in {s.value for s in WAITING_STATES}


def parse_event_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
