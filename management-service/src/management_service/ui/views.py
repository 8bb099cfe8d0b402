"""What the console's pages show, read through the same Python the API routes call (the health check,
the queue, the history store, the weights) and shaped for the templates.

The plan of a run is the planner's `Plan.to_dict()` kept as JSON in the history; it is read here
field by field into small dataclasses, tolerating a plan stored before a field existed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from management_service.health import check_health
from management_service.models import Drift, HealthResponse, PlanWeights, WeightLine
from management_service.services import Services
from management_service.ui.chart import Chart, activity_chart
from management_service.weights import drift_now, last_plan, plan_weights, weight_lines
from rebalancer_shared.accounts import Account
from rebalancer_shared.queue import QueuedEventView, QueueStats
from rebalancer_shared.queue.models import WAITING_STATES
from rebalancer_shared.store import EventFilter, EventSummary, ListedOrder, OrderFilter, RunView
from rebalancer_shared.store.activity import hourly_activity

# Live events the console reads from the queue at once (the API's /queue/events allows 1000 too).
LIVE_EVENTS_SHOWN = 1000
RUNS_SEARCHED_FOR_A_PLAN = 50  # as GET /accounts/{id}
RECENT_ROWS = 10


@dataclass(frozen=True)
class GatewayLine:
    """IB Gateway as one processor found it (its heartbeat's `gateway` detail)."""

    instance: str
    state: str  # idle, connected, unreachable
    since: datetime | None
    reason: str | None


def gateway_lines(health: HealthResponse) -> list[GatewayLine]:
    """The gateway as each processor reports it (none with a simulated broker)."""
    processors = health.components.heartbeats.get("event-processor")
    lines = []
    for instance in processors.instances if processors else ():
        gateway = instance.details.get("gateway")
        if isinstance(gateway, dict):
            since = gateway.get("since")
            moment = datetime.fromtimestamp(since, UTC) if isinstance(since, int | float) else None
            lines.append(
                GatewayLine(instance.instance, str(gateway.get("state")), moment, gateway.get("reason"))
            )
    return lines


@dataclass(frozen=True)
class Overview:
    """Counts now, the health verdict with heartbeats, IB Gateway and the oldest live event."""

    health: HealthResponse
    stats: QueueStats | None
    oldest: QueuedEventView | None

    @property
    def gateways(self) -> list[GatewayLine]:
        return gateway_lines(self.health)


async def overview(services: Services) -> Overview:
    """The health check (which reads Redis and PostgreSQL), then the counters and the oldest event."""
    health = await check_health(services.queue, services.store, services.health_policy)
    if health.components.redis.status != "ok":
        return Overview(health, None, None)
    stats = await services.queue.stats()
    oldest = await services.queue.list_events(1)
    return Overview(health, stats, oldest[0] if oldest else None)


async def activity(services: Services, now: datetime | None = None) -> Chart:
    """Events per hour over the last 24 hours, from the history."""
    hours = await hourly_activity(services.store.engine, now or datetime.now(UTC))
    return activity_chart(hours)


@dataclass(frozen=True)
class QueueFilter:
    """The queue page's filters; an empty field matches everything. `search` matches the start of an
    event id, or an account or command containing it (case-insensitive)."""

    state: str = ""
    account: str = ""
    command: str = ""
    search: str = ""

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


async def live_events(services: Services, where: QueueFilter = QueueFilter()) -> list[QueuedEventView]:
    """The live events, oldest first, that match `where`."""
    return [v for v in await services.queue.list_events(LIVE_EVENTS_SHOWN) if where.matches(v)]


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


def buy_plan_view(result: Mapping[str, Any] | None) -> PlanView | None:
    """A live rebalance's re-plan of the buys after its sells filled, when it made one."""
    details = (result or {}).get("details")
    buy_plan = details.get("buy_plan") if isinstance(details, Mapping) else None
    return plan_view(buy_plan) if isinstance(buy_plan, Mapping) else None


# --- accounts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    """An account as the console shows it: settings, last run, drift, what waits for it; and, on its
    own page, its newest plan's weights, recent events and orders."""

    account: Account
    last_run: RunView | None
    drift: Drift | None
    waiting: list[QueuedEventView]
    last_plan: PlanWeights | None = None
    recent_events: list[EventSummary] = field(default_factory=list)
    recent_orders: list[ListedOrder] = field(default_factory=list)


def _of_account(events: Sequence[QueuedEventView], account_id: str) -> list[QueuedEventView]:
    return [v for v in events if v.event.account_id == account_id]


async def accounts(services: Services) -> list[AccountView]:
    """Every configured account, in the accounts file's order."""
    live = await services.queue.list_events(LIVE_EVENTS_SHOWN)
    views = []
    for account_id, account in services.accounts.items():
        recent = await services.store.account_runs(account_id, RUNS_SEARCHED_FOR_A_PLAN)
        views.append(
            AccountView(
                account=account,
                last_run=recent[0] if recent else None,
                drift=drift_now(recent, datetime.now(UTC)),
                waiting=_of_account(live, account_id),
            )
        )
    return views


async def account(services: Services, account_id: str) -> AccountView | None:
    """One account with its newest plan, recent events and recent orders; None when not configured."""
    configured = services.accounts.get(account_id)
    if configured is None:
        return None
    recent = await services.store.account_runs(account_id, RUNS_SEARCHED_FOR_A_PLAN)
    live = await services.queue.list_events(LIVE_EVENTS_SHOWN)
    return AccountView(
        account=configured,
        last_run=recent[0] if recent else None,
        drift=drift_now(recent, datetime.now(UTC)),
        waiting=_of_account(live, account_id),
        last_plan=last_plan(recent),
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
