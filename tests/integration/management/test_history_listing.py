"""GET /events: the history's events, filtered, newest first, in keyset pages, against a model.

A few hundred events with few distinct acceptance times (so many share one and only the event id
orders them) in a database of their own; random filters and page sizes; walking every page must give
exactly the model's list, each event once, in order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from management_service.health import HealthPolicy
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import STATUS_AFTER, EventStore, HistoryRecord, Transition
from tests.support.history import transition_records

START = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
ACCOUNTS = ("DU1", "DU2", "DU3")
COMMANDS = (Command.REBALANCE, Command.PRINT_REBALANCE)
SOURCES = (EventSource.API, EventSource.ABLY, EventSource.CLI)
ENDS = (Transition.QUEUED, Transition.PROCESSING, Transition.COMPLETED, Transition.REMOVED)


@dataclass(frozen=True)
class Kept:
    """The model's copy of one event."""

    event_id: uuid.UUID
    account_id: str
    command: str
    source: str
    state: str
    created_at: datetime


@pytest.fixture
def services(queue: EventQueue, fresh_store: EventStore, accounts: Mapping[str, Account]) -> Services:
    return Services(
        lifecycle=EventLifecycle(queue, fresh_store), accounts=accounts, health_policy=HealthPolicy()
    )


async def _fill(store: EventStore, count: int, rng: random.Random) -> list[Kept]:
    kept: list[Kept] = []
    records: list[HistoryRecord] = []
    for _ in range(count):
        event = Event(
            account_id=rng.choice(ACCOUNTS),
            exec_command=rng.choice(COMMANDS),
            source=rng.choice(SOURCES),
            created_at=START + timedelta(minutes=rng.randrange(40)),  # ties on purpose
        )
        end = rng.choice(ENDS)
        records += transition_records(event, (Transition.QUEUED, end))
        state = STATUS_AFTER[end].value
        kept.append(
            Kept(
                event.event_id,
                event.account_id,
                event.exec_command.value,
                event.source.value,
                state,
                event.created_at,
            )
        )
    await store.apply_history(records)
    return kept


def _matches(event: Kept, query: Mapping[str, Any]) -> bool:
    checks = (
        query.get("account_id") in (None, event.account_id),
        query.get("command") in (None, event.command),
        query.get("state") in (None, event.state),
        query.get("source") in (None, event.source),
        "since" not in query or event.created_at >= datetime.fromisoformat(query["since"]),
        "until" not in query or event.created_at < datetime.fromisoformat(query["until"]),
    )
    return all(checks)


def _random_query(rng: random.Random) -> dict[str, Any]:
    choices: dict[str, list[Any]] = {
        "account_id": list(ACCOUNTS),
        "command": [c.value for c in COMMANDS],
        "state": sorted({STATUS_AFTER[t].value for t in ENDS}),
        "source": [s.value for s in SOURCES],
        "since": [(START + timedelta(minutes=m)).isoformat() for m in (5, 20)],
        "until": [(START + timedelta(minutes=m)).isoformat() for m in (10, 30)],
    }
    return {name: rng.choice(values) for name, values in choices.items() if rng.random() < 0.35}


async def _walk(client: httpx.AsyncClient, query: Mapping[str, Any], limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/events", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["events"]) <= limit
        seen += [e["event_id"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert body["events"], "a page that leads on holds events"


async def test_every_page_walk_gives_the_models_events_newest_first_each_once(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    rng = random.Random(20261202)
    model = await _fill(fresh_store, 300, rng)
    newest_first = sorted(model, key=lambda e: (e.created_at, e.event_id), reverse=True)

    for _ in range(25):
        query = _random_query(rng)
        expected = [str(e.event_id) for e in newest_first if _matches(e, query)]
        assert await _walk(client, query, rng.randint(1, 40)) == expected, query

    assert await _walk(client, {}, 500) == [str(e.event_id) for e in newest_first]


async def test_a_page_shows_each_events_row_and_a_short_walk_ends_without_a_cursor(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    [kept] = await _fill(fresh_store, 1, random.Random(7))

    body = (await client.get("/events", params={"account_id": kept.account_id})).json()

    assert body["next_cursor"] is None
    [event] = body["events"]
    assert (event["event_id"], event["status"], event["source"]) == (
        str(kept.event_id),
        kept.state,
        kept.source,
    )
    assert datetime.fromisoformat(event["created_at"]) == kept.created_at


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"cursor": "not-a-cursor"}, "cursor is not one this API gave out"),
        ({"state": "finished"}, "state"),
        ({"command": "rebalance-all"}, "command"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"since": "2026-11-02T14:30:00"}, "since"),
        ({"account_id": "DU1\x00"}, "account_id"),
    ],
)
async def test_a_bad_filter_or_cursor_is_refused_naming_what_is_wrong(
    client: httpx.AsyncClient, params: dict[str, Any], says: str
) -> None:
    response = await client.get("/events", params=params)

    assert response.status_code == 422
    assert says in response.text
