"""The web console's pages through the app in-process (httpx ASGI): filters and search, the live
parts, the History page, errors as console pages (not the API's JSON), and pages while Redis or
PostgreSQL is down."""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from management_service.ui import history, views
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue, QueueKeys
from rebalancer_shared.store import EventStore, OrderRecord, RunRecord, RunStatus
from tests.integration.management.helpers import ACCOUNT_A, ACCOUNT_B, beat_all, retrying_event
from tests.support.servers import free_port, throwaway_redis

pytestmark = pytest.mark.integration
ROW = re.compile(r'<tr data-event-id="([0-9a-f-]{36})"')
SCRIPT = "<script>alert('x')</script>"


def shown_ids(html: str) -> list[str]:
    return ROW.findall(html)


async def submit(lifecycle: EventLifecycle, account_id: str, command: Command) -> str:
    event = Event(account_id=account_id, exec_command=command, source=EventSource.API)
    await lifecycle.submit(event)
    return str(event.event_id)


def assert_console_notice(answer: httpx.Response, status: int, says: str) -> None:
    """A refusal rendered as the console's page (or fragment), with the security headers."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert answer.headers["cache-control"] == "no-store"
    assert 'class="notice bad"' in answer.text
    assert says in html.unescape(answer.text), answer.text


async def test_the_queue_filters_by_state_account_and_command_and_searches(
    client: httpx.AsyncClient, lifecycle: EventLifecycle, queue: EventQueue
) -> None:
    equity_a = await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    failing = await retrying_event(queue)
    assert failing == equity_a
    positions_a = await submit(lifecycle, ACCOUNT_A, Command.PRINT_POSITIONS)
    equity_b = await submit(lifecycle, ACCOUNT_B, Command.PRINT_EQUITY)

    async def ids(query: str) -> list[str]:
        page = await client.get(f"/ui/queue?{query}")
        part = await client.get(f"/ui/parts/queue?{query}")
        assert shown_ids(page.text) == shown_ids(part.text)
        return shown_ids(page.text)

    assert await ids("") == [equity_a, positions_a, equity_b]
    assert await ids("state=retrying") == [equity_a]
    assert await ids("state=queued") == [positions_a, equity_b]
    assert await ids(f"account={ACCOUNT_B}") == [equity_b]
    assert await ids("command=print-equity") == [equity_a, equity_b]
    assert await ids(f"command=print-equity&account={ACCOUNT_A}") == [equity_a]
    assert await ids(f"q={positions_a[:8]}") == [positions_a]
    assert await ids("q=POSITIONS") == [positions_a]
    assert await ids(f"q={ACCOUNT_B[-4:]}") == [equity_b]
    assert await ids(f"q={equity_b}&state=retrying") == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=finished", "unknown state 'finished': choose one of queued, processing, retrying"),
        (
            "command=rebalance-now",
            "unknown command 'rebalance-now': choose one of rebalance, print-rebalance",
        ),
    ],
)
async def test_an_unknown_filter_value_is_named_with_the_allowed_ones(
    client: httpx.AsyncClient, query: str, says: str
) -> None:
    for path in ("/ui/queue", "/ui/parts/queue"):
        assert_console_notice(await client.get(f"{path}?{query}"), 422, says)


async def test_a_search_by_a_whole_event_id_finds_it_beyond_the_listing_cap(
    client: httpx.AsyncClient, lifecycle: EventLifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "LIVE_EVENTS_SHOWN", 2)
    oldest = [await submit(lifecycle, ACCOUNT_A, c) for c in (Command.PRINT_EQUITY, Command.PRINT_ORDERS)]
    deep = await submit(lifecycle, ACCOUNT_B, Command.PRINT_POSITIONS)

    page = (await client.get("/ui/queue")).text
    assert shown_ids(page) == oldest
    assert 'id="queue-capped"' in page
    assert "more than 2 live events" in page

    found = (await client.get(f"/ui/queue?q={deep}")).text
    assert shown_ids(found) == [deep]
    assert "it is live" in found
    gone = str(uuid.uuid4())
    missing = (await client.get(f"/ui/queue?q={gone}")).text
    assert shown_ids(missing) == []
    assert f'href="/ui/events/{gone}" id="searched-event"' in missing


async def test_every_live_part_answers_a_fragment(
    client: httpx.AsyncClient, lifecycle: EventLifecycle
) -> None:
    event_id = await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    for path, says in (
        ("/ui/parts/overview", 'id="health-verdict"'),
        ("/ui/parts/activity", 'id="activity"'),
        ("/ui/parts/queue", f'data-event-id="{event_id}"'),
        ("/ui/parts/accounts", f'data-account-id="{ACCOUNT_B}"'),
        (f"/ui/parts/accounts/{ACCOUNT_A}", f'data-event-id="{event_id}"'),
        (f"/ui/parts/events/{event_id}", 'id="timeline"'),
    ):
        part = await client.get(path, headers={"X-Console-Fetch": "1"})
        assert part.status_code == 200, path
        assert part.headers["x-console-fragment"] == "1", path
        assert "<html" not in part.text, path
        assert says in part.text, path
    page = await client.get("/ui")
    assert "x-console-fragment" not in page.headers


async def test_a_missing_event_or_account_is_a_404_page(client: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    assert_console_notice(await client.get(f"/ui/events/{unknown}"), 404, f"no event has the id '{unknown}'")
    assert_console_notice(await client.get("/ui/events/not-an-id"), 404, "no event has the id 'not-an-id'")
    assert_console_notice(
        await client.get("/ui/accounts/DU404404"), 404, "account 'DU404404' is not configured"
    )
    part = await client.get(f"/ui/parts/events/{unknown}", headers={"X-Console-Fetch": "1"})
    assert_console_notice(part, 404, "no event has the id")
    assert "<html" not in part.text


async def test_errors_under_ui_are_console_pages_while_the_api_keeps_json(client: httpx.AsyncClient) -> None:
    assert_console_notice(await client.get("/ui/nowhere"), 404, "the console has no page at /ui/nowhere")
    assert_console_notice(
        await client.get(f"/ui/queue?q={'x' * 65}"), 422, "q: String should have at most 64"
    )
    assert_console_notice(
        await client.get("/ui/actions/dry-run"), 405, "GET is not served at /ui/actions/dry-run"
    )
    assert_console_notice(
        await client.get("/ui/history?cursor=bogus"), 422, "cursor: cursor is not one this API"
    )
    api = await client.get("/nowhere")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    invalid = await client.get("/queue/events?limit=0")
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["query", "limit"]
    bad_cursor = await client.get("/events?cursor=bogus")
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_an_error_text_is_shown_not_run(
    client: httpx.AsyncClient, lifecycle: EventLifecycle, queue: EventQueue
) -> None:
    event_id = await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    claim = await queue.claim("worker")
    assert claim is not None
    await lifecycle.fail(claim, f"AllocationError: {SCRIPT}", retry_delay_seconds=300)  # and the history
    for path in ("/ui/queue", f"/ui/events/{event_id}"):
        page = (await client.get(path)).text
        assert SCRIPT not in page, path
        assert "&lt;script&gt;alert(" in page, path
    refused = await client.get("/ui/queue?state=<b>x</b>")
    assert "<b>x</b>" not in refused.text
    assert "&lt;b&gt;x&lt;/b&gt;" in refused.text


async def test_the_overview_names_the_oldest_waiting_event_not_one_processing(
    client: httpx.AsyncClient, lifecycle: EventLifecycle, queue: EventQueue
) -> None:
    await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    waiting = await submit(lifecycle, ACCOUNT_B, Command.PRINT_EQUITY)
    assert await queue.claim("worker") is not None  # the oldest is processing now
    [oldest] = re.findall(r'<p id="oldest">(.*?)</p>', (await client.get("/ui")).text, re.DOTALL)
    assert "Oldest waiting event" in oldest
    assert f"/ui/events/{waiting}" in oldest
    assert "state-queued" in oldest


async def test_the_overview_reads_the_queue_counts_once(
    client: httpx.AsyncClient, queue: EventQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    read = queue.stats

    async def counted() -> object:
        calls.append(1)
        return await read()

    monkeypatch.setattr(queue, "stats", counted)
    assert (await client.get("/ui/parts/overview")).status_code == 200
    assert len(calls) == 1


async def test_a_stale_processor_does_not_show_ib_gateway_connected(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await beat_all(redis_client, prefix)
    gateway = {"state": "connected", "since": time.time() - 3600, "reason": None}
    dead = json.dumps({"state": "running", "at": time.time() - 600, "gateway": gateway})
    await redis_client.hset(QueueKeys(prefix).heartbeats, "event-processor:p-dead", dead)
    page = (await client.get("/ui")).text
    assert "p-dead (10 min" in page  # listed among the instances, as stale
    assert not re.findall(r'<tr class="gateway">.*?p-dead', page, re.DOTALL)


async def test_the_accounts_list_refreshes_every_thirty_seconds(client: httpx.AsyncClient) -> None:
    page = (await client.get("/ui/accounts")).text
    [every] = re.findall(r'data-live="/ui/parts/accounts" data-every="(\d+)"', page)
    assert int(every) >= 30


async def test_the_history_lists_finished_events_newest_first_filtered_and_paged(
    app: FastAPI,
    client: httpx.AsyncClient,
    lifecycle: EventLifecycle,
    fresh_store: EventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lifecycle = EventLifecycle(lifecycle.queue, fresh_store)  # a history of this test's own
    app.state.services = Services(lifecycle, app.state.services.accounts, HealthPolicy())
    first = await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    claim = await lifecycle.queue.claim("w")
    assert claim is not None
    await lifecycle.complete(claim)
    second = await submit(lifecycle, ACCOUNT_B, Command.PRINT_POSITIONS)
    third = await submit(lifecycle, ACCOUNT_A, Command.PRINT_ORDERS)

    page = (await client.get("/ui/history")).text
    assert shown_ids(page) == [third, second, first]
    assert re.search(rf'data-event-id="{first}" data-state="completed"', page)
    assert shown_ids((await client.get("/ui/history?state=completed")).text) == [first]
    assert shown_ids((await client.get(f"/ui/history?account={ACCOUNT_A}")).text) == [third, first]
    assert shown_ids((await client.get("/ui/history?command=print-positions&source=api")).text) == [second]
    assert shown_ids((await client.get("/ui/history?source=ably")).text) == []
    assert_console_notice(await client.get("/ui/history?source=pigeon"), 422, "unknown source 'pigeon'")
    # A NUL would reach PostgreSQL (its text cannot hold one: a 500 before); the API refuses it too.
    assert_console_notice(await client.get("/ui/history?account=DU1%00"), 422, "is not an account id")
    assert_console_notice(await client.get("/ui/history?account=a%20b"), 422, "is not an account id")

    monkeypatch.setattr(history, "PAGE_ROWS", 2)
    newest = (await client.get(f"/ui/history?account={ACCOUNT_A}&command=")).text
    assert shown_ids(newest) == [third, first]
    assert 'id="history-older"' not in newest
    paged = (await client.get("/ui/history")).text
    assert shown_ids(paged) == [third, second]
    [older] = re.findall(r'href="/ui/history\?([^"]+)" id="history-older"', paged)
    assert shown_ids((await client.get(f"/ui/history?{older.replace('&amp;', '&')}")).text) == [first]
    assert 'href="/ui/history"' in (await client.get("/ui")).text  # in the nav


@pytest.fixture
async def redis_down_app(
    settings: Settings, store: EventStore, accounts: Mapping[str, Account], prefix: str
) -> AsyncIterator[FastAPI]:
    """The app on a Redis of its own that is killed before the test's requests."""
    with throwaway_redis() as server:
        redis = Redis.from_url(server.url)
        services = Services(
            EventLifecycle(EventQueue(redis, prefix), store),
            accounts,
            HealthPolicy(check_timeout_seconds=1.0),
        )
        server.kill()
        try:
            yield create_app(settings, services=services)
        finally:
            await redis.aclose()


async def test_pages_while_redis_is_down(redis_down_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=redis_down_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        overview = await http.get("/ui")
        queue_page = await http.get("/ui/queue")
        accounts = await http.get("/ui/accounts")
        account = await http.get(f"/ui/accounts/{ACCOUNT_A}")
        api = await http.get("/queue/events")
    assert overview.status_code == 200
    assert "The queue cannot be read now (Redis is down)" in overview.text
    assert_console_notice(queue_page, 503, "Redis is unavailable: ConnectionError")
    for page in (accounts, account):
        assert page.status_code == 200
        assert "unknown (Redis is unavailable)" in page.text
    assert api.status_code == 503
    assert api.json()["detail"].startswith("Redis is unavailable")


@pytest.fixture
def postgres_down_app(settings: Settings, queue: EventQueue, accounts: Mapping[str, Account]) -> FastAPI:
    """The app on a PostgreSQL address where nothing listens."""
    store = EventStore.from_url(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    services = Services(EventLifecycle(queue, store), accounts, HealthPolicy(check_timeout_seconds=2.0))
    return create_app(settings, services=services)


async def test_pages_while_postgresql_is_down(postgres_down_app: FastAPI, lifecycle: EventLifecycle) -> None:
    event_id = await submit(lifecycle, ACCOUNT_A, Command.PRINT_EQUITY)
    transport = httpx.ASGITransport(app=postgres_down_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        overview = await http.get("/ui")
        activity = await http.get("/ui/parts/activity", headers={"X-Console-Fetch": "1"})
        queue_page = await http.get("/ui/queue")
        event = await http.get(f"/ui/events/{event_id}")
        history_page = await http.get("/ui/history")
        api = await http.get("/events")
    assert overview.status_code == 200
    assert "chart unavailable: PostgreSQL is down: " in overview.text
    assert 'id="counts"' in overview.text, "the counts come from Redis"
    assert activity.status_code == 200
    assert "chart unavailable: PostgreSQL is down" in activity.text
    assert queue_page.status_code == 200
    assert event_id in queue_page.text
    assert_console_notice(event, 503, "PostgreSQL is unavailable: OperationalError")
    assert_console_notice(history_page, 503, "PostgreSQL is unavailable")
    assert api.status_code == 503
    assert api.json()["detail"].startswith("PostgreSQL is unavailable")


def weights_table(page: str, table_class: str) -> dict[str, list[str]]:
    """A weights table's rows: symbol -> [before, target, after, after - target] as shown."""
    [table] = re.findall(rf'<table class="{table_class}">(.*?)</table>', page, re.DOTALL)
    rows = re.findall(r'<tr data-symbol="([^"]+)">(.*?)</tr>', table, re.DOTALL)
    return {symbol: re.findall(r'<td class="num">([^<]*)</td>', cells) for symbol, cells in rows}


async def test_a_live_runs_page_shows_the_weights_its_fills_left_beside_the_planned_ones(
    client: httpx.AsyncClient, lifecycle: EventLifecycle
) -> None:
    event = Event(account_id=ACCOUNT_A, exec_command=Command.REBALANCE, source=EventSource.API)
    await lifecycle.submit(event)
    claim = await lifecycle.queue.claim("w")
    assert claim is not None
    equity = {"total_equity": 10_000.0, "reserve_percentage": 1.0, "reserve_amount": 100.0}
    plan = {
        "orders": [],
        "current": {"weights": {"AAA": 0.6, "BBB": 0.3}},
        "targets": {"weights": {"AAA": 0.495, "BBB": 0.495}},
        "projected": {"weights": {"AAA": 0.495, "BBB": 0.495}},
    }
    run = RunRecord(
        event_id=event.event_id,
        attempt=1,
        account_id=ACCOUNT_A,
        exec_command="rebalance",
        execution_mode="live",
        worker="w",
        status=RunStatus.FAILED,
        started_at=datetime.now(UTC),
        equity_info=equity,
        plan=plan,
    )
    await lifecycle.store.save_run(run)
    ref = str(event.event_id)
    await lifecycle.store.save_orders(
        run.run_id,
        event.event_id,
        [
            OrderRecord("AAA", "SELL", 10, "MKT", ref, "Filled", 10, 105.0, seq=0),
            OrderRecord("BBB", "BUY", 20, "MKT", ref, "Inactive", 0, None, seq=1, message="IB error 201"),
        ],
    )
    await lifecycle.complete(claim)

    page = (await client.get(f"/ui/events/{event.event_id}")).text
    assert '<th class="num">after (planned)</th>' in page
    assert weights_table(page, "plan-weights")["BBB"][2] == "49.50 %"  # as planned, had it filled
    filled = weights_table(page, "filled-weights")
    assert filled["AAA"][:3] == ["60.00 %", "49.50 %", "49.50 %"]  # 60 % - 10 x 105 / 10,000
    assert filled["BBB"][:3] == ["30.00 %", "49.50 %", "30.00 %"]  # the buy was rejected: nothing moved
    assert '<th class="num">after fills</th>' in page
