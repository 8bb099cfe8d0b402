"""Building blocks of the notifier tests: a clock to move, targets, events taken through their life."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from management_service.health import HealthPolicy
from management_service.notifications import Notifier, resolve_targets
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.failures import FailureClass
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.notification_targets import NotificationSettings, NotificationTarget, NotifyOn
from rebalancer_shared.queue import EventState, Wait
from rebalancer_shared.store import OrderRecord, RunRecord, RunStatus
from rebalancer_shared.store.tables import NotificationRow


@dataclass
class Clock:
    """Wall-clock seconds that a test moves forward by hand (backoffs and rate limits)."""

    now: float

    def __call__(self) -> float:
        return self.now


def target(url: str, *on: NotifyOn, dry_runs: bool = False, name: str | None = None) -> NotificationTarget:
    """A target wanting `on`, as a configuration file would give it."""
    return NotificationTarget(url=url, on=on, dry_runs=dry_runs, name=name)


async def statuses(lifecycle: EventLifecycle) -> dict[str, int]:
    """How many notification rows are in each status."""
    async with lifecycle.store.engine.connect() as conn:
        found = await conn.execute(
            select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
        )
        return {status: count for status, count in found.all()}


def account(account_id: str, *notify: NotificationTarget) -> Account:
    return Account(account_id, f"channel-{account_id}", RebalancingSettings(), notify=tuple(notify))


def notifier(
    lifecycle: EventLifecycle,
    targets: Sequence[NotificationTarget],
    accounts: Mapping[str, Account] | None = None,
    clock: Clock | None = None,
    delivery_timeout_seconds: float = 30.0,
    **options: Any,
) -> Notifier:
    """A notifier of this lifecycle's queue and history, with these global targets."""
    settings = Settings(notifications=NotificationSettings(targets=tuple(targets), **options))
    resolved = resolve_targets(settings, accounts or {}, {})
    return Notifier(
        lifecycle.queue,
        lifecycle.store,
        resolved,
        settings.notifications,
        HealthPolicy(stale_after_seconds=30.0),
        clock=clock or time.time,
        quick_wait_max_seconds=0.01,
        delivery_timeout_seconds=delivery_timeout_seconds,
    )


def new_event(account_id: str, command: Command) -> Event:
    return Event(account_id=account_id, exec_command=command, source=EventSource.API, data={})


async def complete(
    lifecycle: EventLifecycle, event: Event, run: RunRecord | None = None, orders: Sequence[OrderRecord] = ()
) -> None:
    """Queue, claim and complete `event` (saving `run` and its orders first, as the processor does)."""
    await lifecycle.submit(event)
    claim = await lifecycle.claim("test-worker", wait_seconds=1.0)
    assert claim is not None
    assert claim.event.event_id == event.event_id
    if run is not None:
        await lifecycle.store.save_run(run)
        await lifecycle.store.save_orders(run.run_id, event.event_id, orders)
    await lifecycle.complete(claim)


async def fail(lifecycle: EventLifecycle, event: Event, state: EventState, failure: FailureClass) -> None:
    """Queue, claim and fail `event` into a waiting state."""
    await lifecycle.submit(event)
    claim = await lifecycle.claim("test-worker", wait_seconds=1.0)
    assert claim is not None
    assert claim.event.event_id == event.event_id
    wait = Wait(state=state, failure_class=failure, delay_seconds=60.0)
    await lifecycle.fail(claim, f"ConnectionError: gateway refused for {event.account_id}", wait=wait)


def live_run(event: Event) -> tuple[RunRecord, list[OrderRecord]]:
    """A finished live run of `event` with one sell and one buy, as the processor stores it."""
    equity: dict[str, Any] = {"total_equity": 10_000.0, "reserve_percentage": 1.0, "reserve_amount": 100.0}
    plan: dict[str, Any] = {
        "orders": [],
        "equity_info": equity,
        "current": {"weights": {"AAA": 0.6, "BBB": 0.3}},  # the planner's Plan.to_dict() keys
        "targets": {"weights": {"AAA": 0.495, "BBB": 0.495}},
    }
    run = RunRecord(
        event_id=event.event_id,
        attempt=1,
        account_id=event.account_id,
        exec_command=event.exec_command.value,
        execution_mode="live",
        worker="test-worker",
        status=RunStatus.SUCCESS,
        started_at=datetime.now(UTC),
        run_id=uuid.uuid4(),
        message="2 orders filled",
        equity_info=equity,
        plan=plan,
        finished_at=datetime.now(UTC),
    )
    orders = [
        OrderRecord("AAA", "SELL", 10, "MKT", str(event.event_id), "Filled", 10, 100.0, seq=0),
        OrderRecord("BBB", "BUY", 20, "MKT", str(event.event_id), "Filled", 20, 97.5, seq=1),
    ]
    return run, orders
