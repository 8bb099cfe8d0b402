"""The web console's sign-in, CSRF and read-only rules, through the app in-process (httpx ASGI)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.heartbeats import beat
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue, QueueKeys
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import ACCOUNT_A, API_KEY, make_settings, retrying_event
from tests.support.servers import throwaway_redis

pytestmark = pytest.mark.integration
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGES = ("/ui", "/ui/queue", "/ui/accounts", f"/ui/accounts/{ACCOUNT_A}")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def console_client(app: FastAPI, client_host: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` of its own (its own cookies), from `client_host`."""
    transport = httpx.ASGITransport(app=app, client=(client_host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        yield http


async def signed_in_token(client: httpx.AsyncClient) -> str:
    """Sign in through the form; the CSRF token of the signed-in session."""
    token = csrf_of((await client.get("/ui/signin")).text)
    answer = await client.post("/ui/signin", data={"api_key": API_KEY, "csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui"
    return csrf_of((await client.get(f"/ui/accounts/{ACCOUNT_A}")).text)


async def test_pages_are_read_only_without_sign_in(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200, path
        assert 'id="read-only"' in page.text
        assert "/ui/actions/" not in page.text, f"{path} shows an action to a visitor"
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert page.headers["cache-control"] == "no-store"


async def test_sign_in_shows_the_actions_and_the_key_appears_nowhere(client: httpx.AsyncClient) -> None:
    await signed_in_token(client)
    for path in PAGES:
        page = await client.get(path)
        assert 'id="signed-in"' in page.text
        assert API_KEY not in page.text
    assert 'id="dry-run-form"' in (await client.get(f"/ui/accounts/{ACCOUNT_A}")).text
    cookies = list(client.cookies.jar)
    assert [c.name for c in cookies] == ["rebalancer_console"]
    assert all(API_KEY not in str(c.value) for c in cookies)


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(
    client: httpx.AsyncClient,
) -> None:
    token = csrf_of((await client.get("/ui/signin")).text)
    answer = await client.post("/ui/signin", data={"api_key": API_KEY, "csrf_token": token})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/ui" in cookie
    assert "secure" not in cookie  # CONSOLE_HTTPS_ONLY is off by default


async def test_a_wrong_key_does_not_sign_in(client: httpx.AsyncClient) -> None:
    token = csrf_of((await client.get("/ui/signin")).text)
    answer = await client.post("/ui/signin", data={"api_key": "not-the-key", "csrf_token": token})
    assert answer.status_code == 401
    assert "that is not the API key" in answer.text
    assert 'id="read-only"' in (await client.get("/ui")).text


async def test_sign_in_without_the_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await client.get("/ui/signin")
    answer = await client.post("/ui/signin", data={"api_key": API_KEY})
    assert answer.status_code == 403
    assert 'id="read-only"' in (await client.get("/ui")).text


@pytest.mark.parametrize("token", [None, "forged-token"])
async def test_an_action_without_the_right_csrf_token_is_refused_and_does_nothing(
    client: httpx.AsyncClient, queue: EventQueue, token: str | None
) -> None:
    await signed_in_token(client)
    form = {"account_id": ACCOUNT_A} | ({"csrf_token": token} if token else {})
    answer = await client.post("/ui/actions/dry-run", data=form)
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert await queue.list_events(10) == []


async def test_an_action_without_sign_in_is_refused_and_does_nothing(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    token = csrf_of((await client.get("/ui/signin")).text)
    answer = await client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": token})
    assert answer.status_code == 401
    assert await queue.list_events(10) == []


async def test_a_dry_run_from_the_console_is_queued_with_source_api(
    client: httpx.AsyncClient, queue: EventQueue
) -> None:
    token = await signed_in_token(client)
    answer = await client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": token})
    assert answer.status_code == 303
    [view] = await queue.list_events(10)
    assert answer.headers["location"] == f"/ui/events/{view.event.event_id}"
    assert (view.event.account_id, view.event.exec_command, view.event.source) == (
        ACCOUNT_A,
        Command.PRINT_REBALANCE,
        EventSource.API,
    )
    again = await client.post(
        "/ui/actions/dry-run",
        data={"account_id": ACCOUNT_A, "csrf_token": token},
        headers={"X-Console-Fetch": "1"},
    )
    assert again.status_code == 200
    assert "already queued: nothing was added" in again.text
    assert f'data-event-id="{view.event.event_id}"' in again.text


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"confirm_account": "DU999999", "allow_live": "true"}, 422, "type the account id"),
        ({"confirm_account": ""}, 422, "type the account id"),
        ({"confirm_account": ACCOUNT_A}, 403, "place real orders"),
    ],
)
async def test_a_live_rebalance_needs_the_typed_account_and_the_live_guard(
    client: httpx.AsyncClient, queue: EventQueue, form: dict[str, str], status: int, says: str
) -> None:
    token = await signed_in_token(client)
    answer = await client.post(
        "/ui/actions/rebalance", data={"account_id": ACCOUNT_A, "csrf_token": token} | form
    )
    assert answer.status_code == status
    assert says in answer.text
    assert await queue.list_events(10) == []


async def test_a_confirmed_live_rebalance_is_queued(client: httpx.AsyncClient, queue: EventQueue) -> None:
    token = await signed_in_token(client)
    form = {"account_id": ACCOUNT_A, "confirm_account": ACCOUNT_A, "allow_live": "true", "csrf_token": token}
    answer = await client.post("/ui/actions/rebalance", data=form)
    assert answer.status_code == 303
    [view] = await queue.list_events(10)
    assert view.event.exec_command is Command.REBALANCE


async def test_an_unknown_account_is_refused(client: httpx.AsyncClient, queue: EventQueue) -> None:
    token = await signed_in_token(client)
    answer = await client.post("/ui/actions/dry-run", data={"account_id": "DU404404", "csrf_token": token})
    assert answer.status_code == 422
    assert "not configured" in answer.text
    assert await queue.list_events(10) == []


async def test_retry_now_and_remove_from_the_console(
    client: httpx.AsyncClient, queue: EventQueue, lifecycle: EventLifecycle
) -> None:
    await lifecycle.submit(
        Event(account_id=ACCOUNT_A, exec_command=Command.PRINT_EQUITY, source=EventSource.API)
    )
    event_id = await retrying_event(queue)
    token = await signed_in_token(client)
    queue_page = (await client.get("/ui/queue")).text
    assert f"/ui/events/{event_id}/retry" in queue_page
    retried = await client.post(f"/ui/events/{event_id}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    [view] = await queue.list_events(10)
    assert view.state.value == "queued"
    removed = await client.post(f"/ui/events/{event_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    assert await queue.list_events(10) == []
    gone = await client.post(f"/ui/events/{event_id}/remove", data={"csrf_token": token})
    assert gone.status_code == 404


async def test_sign_out_ends_the_session(client: httpx.AsyncClient, queue: EventQueue) -> None:
    token = await signed_in_token(client)
    answer = await client.post("/ui/signout", data={"csrf_token": token})
    assert answer.status_code == 303
    assert 'id="read-only"' in (await client.get("/ui")).text
    # The browser's cookie was cleared, so its new session has a new CSRF token: the old one is refused
    # before sign-in is even looked at.
    refused = await client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": token})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert await queue.list_events(10) == []


async def test_a_cookie_copied_before_sign_out_is_worthless_after_it(
    client: httpx.AsyncClient, app: FastAPI, queue: EventQueue
) -> None:
    token = await signed_in_token(client)
    copied = httpx.Cookies(client.cookies)
    assert (await client.post("/ui/signout", data={"csrf_token": token})).status_code == 303
    async with console_client(app) as thief:
        thief.cookies = copied
        assert 'id="read-only"' in (await thief.get("/ui")).text
        refused = await thief.post("/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": token})
    assert refused.status_code == 401  # the CSRF token matches the copy; the session is gone
    assert "sign in first" in refused.text
    assert await queue.list_events(10) == []


def session_keys(prefix: str) -> str:
    return f"{QueueKeys(prefix).console_session('')}*"


async def test_a_session_lives_eight_hours_from_sign_in_however_much_it_is_used(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await signed_in_token(client)
    [key] = [k async for k in redis_client.scan_iter(match=session_keys(prefix))]
    assert 8 * 3600 - 60 <= await redis_client.ttl(key) <= 8 * 3600
    await redis_client.expire(key, 120)  # as if signed in 7 h 58 min ago
    for _ in range(3):
        assert 'id="signed-in"' in (await client.get("/ui/queue")).text
    assert await redis_client.ttl(key) <= 120, "using the session extended it"
    await redis_client.delete(key)  # what its expiry does
    assert 'id="read-only"' in (await client.get("/ui")).text


async def test_redis_keeps_only_a_hash_of_the_session_id(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    await signed_in_token(client)
    cookie = client.cookies["rebalancer_console"]
    payload = json.loads(base64.b64decode(cookie.split(".")[0] + "=="))
    assert set(payload) == {"sid", "csrf"}
    [key] = [k.decode() async for k in redis_client.scan_iter(match=session_keys(prefix))]
    assert payload["sid"] not in key
    assert key.endswith(hashlib.sha256(payload["sid"].encode()).hexdigest())


async def test_sign_in_rotates_the_csrf_token(client: httpx.AsyncClient) -> None:
    before = csrf_of((await client.get("/ui/signin")).text)
    after = await signed_in_token(client)
    assert after != before
    refused = await client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": before})
    assert refused.status_code == 403


async def test_sign_in_is_throttled_after_ten_failures_and_every_attempt_is_logged(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    token = csrf_of((await client.get("/ui/signin")).text)
    with structlog.testing.capture_logs() as logs:
        for attempt in range(10):
            wrong = await client.post("/ui/signin", data={"api_key": f"guess-{attempt}", "csrf_token": token})
            assert wrong.status_code == 401
        blocked = await client.post("/ui/signin", data={"api_key": API_KEY, "csrf_token": token})
        async with console_client(app, client_host="203.0.113.9") as elsewhere:
            other = await signed_in_token(elsewhere)
    assert blocked.status_code == 429
    assert "too many failed sign-ins" in blocked.text
    assert re.search(r"try again after \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in 1[45] min", blocked.text)
    assert 840 <= int(blocked.headers["retry-after"]) <= 900
    assert 'id="read-only"' in (await client.get("/ui")).text, "the right key was not even compared"
    assert other, "another address is not throttled"
    failed = [e for e in logs if e["event"] == "console sign-in failed"]
    assert len(failed) == 10
    assert {e["client"] for e in failed} == {"127.0.0.1"}
    assert [e["failures"] for e in failed] == list(range(1, 11))
    assert [e["client"] for e in logs if e["event"] == "console sign-in"] == ["203.0.113.9"]
    assert any(e["event"] == "console sign-in refused: too many failures" for e in logs)
    assert API_KEY not in repr(logs)
    assert "guess-3" not in repr(logs)


async def test_with_redis_down_actions_and_sign_in_are_refused_and_public_pages_render(
    settings: Settings, store: EventStore, accounts: Mapping[str, Account], prefix: str
) -> None:
    with throwaway_redis() as server:
        redis = Redis.from_url(server.url)
        services = Services(
            lifecycle=EventLifecycle(EventQueue(redis, prefix), store),
            accounts=accounts,
            health_policy=HealthPolicy(check_timeout_seconds=1.0),
        )
        app = create_app(settings, services=services)
        try:
            async with console_client(app) as http:
                token = await signed_in_token(http)
                server.kill()
                overview = await http.get("/ui")
                action = await http.post(
                    "/ui/actions/dry-run", data={"account_id": ACCOUNT_A, "csrf_token": token}
                )
                signin_token = csrf_of((await http.get("/ui/signin")).text)
                again = await http.post("/ui/signin", data={"api_key": API_KEY, "csrf_token": signin_token})
        finally:
            await redis.aclose()
    assert overview.status_code == 200
    assert 'id="read-only"' in overview.text
    assert "Redis is down" in overview.text
    assert action.status_code == 503
    assert "Redis is unavailable, so the console cannot check your session" in action.text
    assert "nothing was done" in action.text
    assert again.status_code == 503
    assert "cannot sign in now: Redis, where sessions are kept, is unavailable" in again.text


async def test_a_new_api_key_signs_everyone_out(
    client: httpx.AsyncClient,
    services: Services,
    tmp_path: Path,
    prefix: str,
    session_database: str,
    accounts_file: Path,
) -> None:
    await signed_in_token(client)
    rotated = make_settings(
        tmp_path,
        prefix=prefix,
        database_url=session_database,
        accounts_file=accounts_file,
        MANAGEMENT_API_KEY="a-new-key-after-rotation",
    )
    app = create_app(rotated, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as other:
        other.cookies = client.cookies
        assert 'id="read-only"' in (await other.get("/ui")).text


@pytest.fixture
async def protected(
    services: Services, tmp_path: Path, prefix: str, session_database: str, accounts_file: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        prefix=prefix,
        database_url=session_database,
        accounts_file=accounts_file,
        PROTECT_READS="true",
    )
    transport = httpx.ASGITransport(app=create_app(settings, services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        yield http


async def test_with_protected_reads_pages_need_sign_in(protected: httpx.AsyncClient) -> None:
    for path in PAGES:
        page = await protected.get(path)
        assert page.status_code == 303, path
        assert page.headers["location"] == "/ui/signin"
    part = await protected.get("/ui/parts/overview")
    assert part.status_code == 401
    assert "sign in" in part.text
    assert (await protected.get("/ui/signin")).status_code == 200
    await signed_in_token(protected)
    for path in PAGES:
        assert (await protected.get(path)).status_code == 200, path


async def test_the_console_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


async def test_the_overview_shows_ib_gateway_as_each_processor_found_it(
    client: httpx.AsyncClient, redis_client: Redis, prefix: str
) -> None:
    reason = "cannot connect to IB Gateway at 127.0.0.1:4002 (paper mode) after 3 attempt(s)"
    gateway = {"state": "unreachable", "since": 1_796_000_000.0, "reason": reason}
    await beat(redis_client, prefix, "event-processor", "p7", "running", gateway=gateway)

    page = (await client.get("/ui")).text

    [row] = re.findall(r'<tr class="gateway">(.*?)</tr>', page, re.DOTALL)
    assert "via p7" in row
    assert "state-down" in row
    assert reason in row
    assert "since 2026-11-30 00:53:20" in row  # 1,796,000,000 s after the epoch, in UTC
    assert "IB Gateway is unreachable from event-processor p7" in page  # the verdict says why
