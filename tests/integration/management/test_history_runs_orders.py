"""GET /orders (against a model), GET /runs/{run_id} and GET /accounts/{account_id}.

Events, runs and orders are written through the store as the processor writes them (a plan is a real
planner's `Plan.to_dict()`), in a database of their own.
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

from event_processor.planner import Holding, PlanInput, plan_rebalance
from management_service.health import HealthPolicy
from management_service.services import Services
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, OrderRecord, RunRecord, RunStatus, Transition
from tests.integration.management.helpers import ACCOUNT_A, ACCOUNT_B
from tests.support.history import transition_records

SYMBOLS = ("AAA", "BBB", "CCC")
STATUSES = ("Filled", "Cancelled", "Submitted")


@dataclass(frozen=True)
class KeptOrder:
    order_ref: str
    account_id: str
    event_id: str
    run_id: str
    symbol: str
    status: str


@pytest.fixture
def services(queue: EventQueue, fresh_store: EventStore, accounts: Mapping[str, Account]) -> Services:
    return Services(
        lifecycle=EventLifecycle(queue, fresh_store), accounts=accounts, health_policy=HealthPolicy()
    )


async def _event(store: EventStore, account_id: str, at: datetime) -> Event:
    event = Event(
        account_id=account_id, exec_command=Command.REBALANCE, source=EventSource.API, created_at=at
    )
    await store.apply_history(transition_records(event, [Transition.QUEUED]))
    return event


def _run(event: Event, at: datetime, **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "event_id": event.event_id,
        "attempt": 1,
        "account_id": event.account_id,
        "exec_command": event.exec_command.value,
        "execution_mode": "live",
        "worker": "test-worker",
        "status": RunStatus.SUCCESS,
        "started_at": at,
        "finished_at": at + timedelta(seconds=5),
        **fields,
    }
    return RunRecord(**values)


async def _fill_orders(store: EventStore, rng: random.Random) -> list[KeptOrder]:
    """Forty runs over both accounts, each with zero to five orders (one batch shares a timestamp)."""
    kept: list[KeptOrder] = []
    for number in range(40):
        event = await _event(store, rng.choice((ACCOUNT_A, ACCOUNT_B)), datetime.now(UTC))
        run = _run(event, datetime.now(UTC))
        await store.save_run(run)
        orders = [
            OrderRecord(
                symbol=rng.choice(SYMBOLS),
                action=rng.choice(("BUY", "SELL")),
                quantity=float(rng.randint(1, 50)),
                order_type="MKT",
                order_ref=f"ref-{number}-{seq}",
                status=rng.choice(STATUSES),
                seq=seq,
            )
            for seq in range(rng.randint(0, 5))
        ]
        await store.save_orders(run.run_id, event.event_id, orders)
        kept += [
            KeptOrder(o.order_ref, event.account_id, str(event.event_id), str(run.run_id), o.symbol, o.status)
            for o in orders
        ]
    return kept


async def _walk(client: httpx.AsyncClient, query: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/orders", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["orders"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def _random_query(rng: random.Random, model: list[KeptOrder]) -> dict[str, Any]:
    some = rng.choice(model)
    choices = {
        "account_id": rng.choice((ACCOUNT_A, ACCOUNT_B)),
        "symbol": rng.choice(SYMBOLS),
        "status": rng.choice(STATUSES),
        "run_id": some.run_id,
        "event_id": some.event_id,
    }
    return {name: value for name, value in choices.items() if rng.random() < 0.3}


def _matches(order: KeptOrder, query: Mapping[str, Any]) -> bool:
    return all(getattr(order, name) == value for name, value in query.items())


async def test_every_order_page_walk_gives_the_models_orders_newest_first_each_once(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    rng = random.Random(20261203)
    model = await _fill_orders(fresh_store, rng)
    newest_first = list(reversed(model))  # recorded one after the other
    assert len(model) > 60

    for _ in range(20):
        query = _random_query(rng, model)
        expected = [o.order_ref for o in newest_first if _matches(o, query)]
        assert [o["order_ref"] for o in await _walk(client, query, rng.randint(1, 15))] == expected, query

    everything = await _walk(client, {}, 500)
    assert [o["order_ref"] for o in everything] == [o.order_ref for o in newest_first]
    first = everything[-1]
    assert (first["account_id"], first["run_id"]) == (model[0].account_id, model[0].run_id)

    # A time range keeps the orders recorded in it, by the times the listing itself shows.
    times = sorted({datetime.fromisoformat(o["created_at"]) for o in everything})
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    inside = await _walk(client, {"since": since.isoformat(), "until": until.isoformat()}, 7)
    expected = [
        o["order_ref"] for o in everything if since <= datetime.fromisoformat(o["created_at"]) < until
    ]
    assert [o["order_ref"] for o in inside] == expected
    assert 0 < len(expected) < len(everything)


async def test_a_run_shows_its_plan_result_and_orders_and_an_unknown_run_is_404(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    event = await _event(fresh_store, ACCOUNT_A, datetime.now(UTC))
    run = _run(event, datetime.now(UTC), plan={"orders": []}, error=None, message="filled")
    await fresh_store.save_run(run)
    order = OrderRecord("AAA", "BUY", 3.0, "MKT", "ref-1", "Filled", 3.0, 101.25, seq=0)
    await fresh_store.save_orders(run.run_id, event.event_id, [order])

    body = (await client.get(f"/runs/{run.run_id}")).json()

    assert (body["run_id"], body["event_id"], body["account_id"]) == (
        str(run.run_id),
        str(event.event_id),
        ACCOUNT_A,
    )
    assert (body["status"], body["message"], body["plan"]) == ("success", "filled", {"orders": []})
    assert [(o["symbol"], o["filled_quantity"], o["avg_fill_price"]) for o in body["orders"]] == [
        ("AAA", 3.0, 101.25)
    ]
    missing = uuid.uuid4()
    response = await client.get(f"/runs/{missing}")
    assert response.status_code == 404
    assert str(missing) in response.json()["detail"]


def _plan(holdings: Mapping[str, float]) -> dict[str, Any]:
    prices = {"AAA": 100.0, "BBB": 50.0}
    made = plan_rebalance(
        PlanInput(
            targets={"AAA": 0.5, "BBB": 0.5},
            holdings={s: Holding(q) for s, q in holdings.items()},
            prices=prices,
            cash=10_000.0,
            net_liquidation=10_000.0 + sum(q * prices[s] for s, q in holdings.items()),
            settings=RebalancingSettings(),
        )
    )
    return made.to_dict()


async def test_an_account_shows_its_runs_the_newest_plans_weights_and_its_drift(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    now = datetime.now(UTC)
    event = await _event(fresh_store, ACCOUNT_A, now - timedelta(minutes=10))
    old = _run(event, now - timedelta(minutes=10), plan=_plan({}), exec_command="print-rebalance")
    dry = _run(event, now - timedelta(minutes=5), plan=_plan({"AAA": 100}), execution_mode="dry_run")
    reads = _run(event, now - timedelta(minutes=1), exec_command="print-positions")  # no plan
    for run in (old, dry, reads):
        await fresh_store.save_run(run)

    body = (await client.get(f"/accounts/{ACCOUNT_A}", params={"limit": 2})).json()

    assert (body["channel"], body["settings"]["equity_reserve_percentage"]) == ("strategy-a", 2.5)
    assert [r["run_id"] for r in body["runs"]] == [str(reads.run_id), str(dry.run_id)]
    assert body["last_run"]["exec_command"] == "print-positions"
    older = (await client.get(f"/accounts/{ACCOUNT_A}", params={"cursor": body["runs_cursor"]})).json()
    assert [r["run_id"] for r in older["runs"]] == [str(old.run_id)]
    assert older["runs_cursor"] is None

    # The newest plan is the dry run's: 10,000 of AAA and 10,000 cash of 20,000, targets 50/50 less 1 %.
    plan = body["last_plan"]
    assert plan["run_id"] == str(dry.run_id)
    lines = {line["symbol"]: line for line in plan["lines"]}
    assert lines["AAA"]["before"] == pytest.approx(0.5)
    assert lines["BBB"]["before"] == pytest.approx(0.0)
    assert lines["AAA"]["target"] == pytest.approx(0.495)
    assert lines["BBB"]["after"] == pytest.approx(0.495, abs=0.003)
    # A dry run traded nothing: the account still holds what it read, 49.5 % of BBB away from target.
    drift = body["drift"]
    assert drift["source"] == "read_by_run"
    assert drift["max_gap_bp"] == pytest.approx(4_950, abs=1)
    assert drift["l1_gap_bp"] == pytest.approx(5_000, abs=1)


async def test_a_filled_live_rebalance_leaves_its_projection_as_the_drift_and_old_ones_tell_nothing(
    client: httpx.AsyncClient, fresh_store: EventStore
) -> None:
    now = datetime.now(UTC)
    event = await _event(fresh_store, ACCOUNT_B, now - timedelta(days=2))
    stale = _run(event, now - timedelta(days=2), plan=_plan({"AAA": 100}))
    await fresh_store.save_run(stale)
    body = (await client.get(f"/accounts/{ACCOUNT_B}")).json()
    assert body["last_plan"]["run_id"] == str(stale.run_id)
    assert body["drift"] is None

    live = _run(event, now - timedelta(minutes=1), plan=_plan({"AAA": 100}))
    await fresh_store.save_run(live)
    drift = (await client.get(f"/accounts/{ACCOUNT_B}")).json()["drift"]
    assert drift["source"] == "after_live_rebalance"
    assert drift["max_gap_bp"] < 50


async def test_an_account_not_configured_is_404_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/accounts/DU000000")
    assert response.status_code == 404
    assert "DU000000" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/orders", {"cursor": "bm90IG91cnM"}, "cursor is not one this API gave out"),
        ("/orders", {"run_id": "run-1"}, "run_id"),
        ("/orders", {"since": "yesterday"}, "ISO 8601"),
        ("/orders", {"limit": 501}, "limit"),
        ("/orders", {"status": "\x00"}, "status"),  # PostgreSQL text cannot hold NUL: was a 500
        ("/orders", {"symbol": "A\x00"}, "symbol"),
        (f"/accounts/{ACCOUNT_A}", {"cursor": "x"}, "cursor"),
        ("/runs/not-a-uuid", {}, "run_id"),
    ],
)
async def test_a_bad_filter_is_refused_naming_it(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], says: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 422
    assert says in response.text
