"""/accounts: the configured accounts with channel, settings and last run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from management_service.health import HealthPolicy
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, RunRecord, RunStatus
from tests.integration.management.helpers import ACCOUNT_A, ACCOUNT_B
from tests.integration.queue.helpers import make_event


@pytest.fixture
def services(queue: EventQueue, fresh_store: EventStore, accounts: Mapping[str, Account]) -> Services:
    """A database of the test's own: the last run is per account id, which other tests share."""
    return Services(
        lifecycle=EventLifecycle(queue, fresh_store), accounts=accounts, health_policy=HealthPolicy()
    )


async def test_accounts_are_listed_with_channel_and_settings(client: httpx.AsyncClient) -> None:
    response = await client.get("/accounts")
    assert response.status_code == 200
    accounts = response.json()
    assert [(a["account_id"], a["channel"]) for a in accounts] == [
        (ACCOUNT_A, "strategy-a"),
        (ACCOUNT_B, "strategy-b"),
    ]
    assert accounts[0]["settings"]["equity_reserve_percentage"] == 2.5
    assert accounts[1]["settings"]["equity_reserve_percentage"] == 1.0
    assert accounts[1]["settings"]["fractional_shares"] is False
    assert [a["last_run"] for a in accounts] == [None, None]


async def test_the_last_run_of_each_account_is_shown(
    client: httpx.AsyncClient, queue: EventQueue, fresh_store: EventStore
) -> None:
    event = make_event(ACCOUNT_A, Command.PRINT_REBALANCE)
    await EventLifecycle(queue, fresh_store).submit(event)
    start = datetime.now(UTC)
    for attempt, status in ((1, RunStatus.FAILED), (2, RunStatus.SUCCESS)):
        run = RunRecord(
            event_id=event.event_id,
            attempt=attempt,
            account_id=ACCOUNT_A,
            exec_command="print-rebalance",
            execution_mode="dry_run",
            worker="w",
            status=status,
            started_at=start + timedelta(seconds=attempt),
            message=f"attempt {attempt}",
        )
        await fresh_store.save_run(run)
    accounts = (await client.get("/accounts")).json()
    last_run = accounts[0]["last_run"]
    assert (last_run["status"], last_run["message"], last_run["event_id"]) == (
        "success",
        "attempt 2",
        str(event.event_id),
    )
    assert last_run["exec_command"] == "print-rebalance"
    assert accounts[1]["last_run"] is None
