"""The web console in a real Chromium against the real demo process (its whole pipeline, simulated
accounts): sign in, a dry run and a live rebalance from the page followed live without a reload,
the event page's plan against the API, refusals without the key or the CSRF token, sign-out."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from management_service.ui.rendering import number
from tests.browser.conftest import PHONE
from tests.integration.management.demo_session import DemoProcess

# One worker runs the whole module: one demo process and one browser serve every test of it.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("console-browser")]
ACCOUNT = "DU123456"
LIVE_ACCOUNT = "DU789012"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(page: Page, api_key: str) -> None:
    page.goto("/ui/signin")
    page.fill("#api_key", api_key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible()
    assert api_key not in page.url


def api_events(demo: DemoProcess, account_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{demo.base_url}/events", params={"account_id": account_id, "limit": 500}, timeout=5)
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def api_history(demo: DemoProcess, event_id: str) -> dict[str, Any]:
    history: dict[str, Any] = httpx.get(f"{demo.base_url}/events/{event_id}", timeout=5).json()
    return history


def mark_the_page(page: Page) -> None:
    """A value that lives only as long as this document: a reload or a navigation loses it."""
    page.evaluate("window.consoleTestMark = 'still the same page'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.consoleTestMark") == "still the same page"


def submit_and_follow(page: Page, button: str) -> str:
    """Click an action's button; the id of the event its message links to."""
    page.click(button)
    link = page.locator("#notice a.event-link")
    expect(link).to_be_visible()
    event_id = link.get_attribute("data-event-id")
    assert event_id
    return event_id


def needs_attention_event(demo: DemoProcess, api_key: str) -> str:
    """A dry run of DU000000, whose allocations are broken: it fails and waits for an operator."""
    answer = httpx.post(
        f"{demo.base_url}/queue/events",
        json={
            "account_id": "DU000000",
            "exec_command": "print-rebalance",
            "data": {"exec": "print-rebalance"},
        },
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=5,
    )
    event_id: str = answer.json()["event_id"]
    deadline = time.monotonic() + 15
    while api_history(demo, event_id)["event"]["status"] != "needs_attention":
        assert time.monotonic() < deadline, "the broken account's event did not fail in time"
        time.sleep(0.1)
    return event_id


def test_the_demo_prints_the_console_address(demo: DemoProcess) -> None:
    assert f"console: {demo.base_url}/ui" in demo.printed()


def test_the_demo_prints_the_notifications_of_its_story(demo: DemoProcess) -> None:
    deadline = time.monotonic() + 20
    while demo.printed().count("rebalance success") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    titles = re.findall(r"notification: (.*)", demo.printed())
    assert f"{LIVE_ACCOUNT}: print-rebalance completed" in titles  # the dry run: the receiver wants dry runs
    assert any(t.startswith(f"{LIVE_ACCOUNT}: rebalance success") for t in titles)


def test_a_visitor_sees_no_actions_and_an_action_posted_anyway_is_refused(
    page: Page, demo: DemoProcess
) -> None:
    before = api_events(demo, ACCOUNT)
    page.goto(f"/ui/accounts/{ACCOUNT}")
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#read-only-note")).to_be_visible()
    assert page.locator("#dry-run-form").count() == 0
    page.goto("/ui/signin")
    token = page.locator("#signin-form input[name=csrf_token]").get_attribute("value")
    answer = page.request.post("/ui/actions/dry-run", form={"account_id": ACCOUNT, "csrf_token": token or ""})
    assert answer.status == 401
    assert api_events(demo, ACCOUNT) == before


def test_a_dry_run_from_the_page_completes_live_and_its_plan_matches_the_api(
    page: Page, demo: DemoProcess, api_key: str, screenshots: Path
) -> None:
    sign_in(page, api_key)
    page.goto(f"/ui/accounts/{ACCOUNT}")
    mark_the_page(page)
    event_id = submit_and_follow(page, "#dry-run")
    row = page.locator(f"#account-events tr[data-event-id='{event_id}']")
    expect(row).to_have_attribute("data-state", "completed")
    assert_not_reloaded(page)

    page.click("#notice a.event-link")
    expect(page.locator("#event-state")).to_have_text("completed")
    history = api_history(demo, event_id)
    planned = history["runs"][-1]["plan"]["orders"]
    assert planned, "the demo's prices moved: a plan with orders was expected"
    rows = page.locator("table.plan-orders tbody tr")
    expect(rows).to_have_count(len(planned))
    shown = [row.locator("td").all_inner_texts()[:3] for row in rows.all()]
    assert shown == [[o["symbol"], o["action"], number(o["quantity"], 4)] for o in planned]
    expect(page.locator("#timeline tr[data-state=completed]")).to_have_count(1)
    page.screenshot(path=screenshots / "event.png", full_page=True)

    page.click("nav a[href='/ui/history']")
    finished = page.locator(f"#history-table tr[data-event-id='{event_id}']")
    expect(finished).to_have_attribute("data-state", "completed")
    expect(finished).to_contain_text("print-rebalance")
    page.select_option("#history-filters select[name=state]", "completed")
    page.click("#history-filters button[type=submit]")
    expect(page.locator(f"#history-table tr[data-event-id='{event_id}']")).to_have_count(1)
    assert set(page.locator("#history-table tbody tr").evaluate_all("r => r.map(x => x.dataset.state)")) == {
        "completed"
    }
    page.screenshot(path=screenshots / "history.png", full_page=True)


INJECTED = '{"detail": "<img id=injected src=x> the gateway said no"}'


def test_an_answer_that_is_not_a_console_fragment_is_shown_as_text(page: Page, api_key: str) -> None:
    """A JSON error (from a proxy, say) is never inserted as HTML, in a live part or in the notice."""
    sign_in(page, api_key)
    page.route(
        "**/ui/parts/accounts/*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=INJECTED),
    )
    page.route(
        "**/ui/actions/dry-run",
        lambda route: route.fulfill(status=502, content_type="application/json", body=INJECTED),
    )
    page.goto(f"/ui/accounts/{ACCOUNT}")
    live = page.locator("#account-live")
    expect(live).to_have_attribute("data-stale", re.compile("not a console page: <img id=injected"))
    expect(page.locator("#account-events")).to_be_visible()  # the last content stays
    page.click("#dry-run")
    expect(page.locator("#notice")).to_contain_text("(502) <img id=injected src=x> the gateway said no")
    assert page.locator("#injected").count() == 0


def test_a_live_rebalance_with_the_typed_confirmation_trades_and_its_orders_appear_without_reload(
    page: Page, demo: DemoProcess, api_key: str, screenshots: Path
) -> None:
    sign_in(page, api_key)
    page.goto(f"/ui/accounts/{LIVE_ACCOUNT}")
    mark_the_page(page)
    page.fill("#confirm_account", LIVE_ACCOUNT)
    page.check("#allow_live")
    event_id = submit_and_follow(page, "#live-rebalance")
    expect(page.locator(f"#account-events tr[data-event-id='{event_id}']")).to_have_attribute(
        "data-state", "completed"
    )
    history = api_history(demo, event_id)
    orders = [o for run in history["runs"] for o in run["orders"]]
    assert orders, "a live rebalance after the prices moved places orders"
    assert {o["status"] for o in orders} == {"Filled"}
    shown = page.locator(f"#account-orders tr[data-event-id='{event_id}']")
    expect(shown).to_have_count(len(orders))
    assert sorted(shown.evaluate_all("rows => rows.map(r => r.dataset.symbol)")) == sorted(
        o["symbol"] for o in orders
    )
    assert_not_reloaded(page)
    page.screenshot(path=screenshots / "account.png", full_page=True)
    # The demo's notifier told its receiver, which printed the message with every order.
    message = notification_of(demo, event_id)
    assert message.startswith(f"notification: {LIVE_ACCOUNT}: rebalance success, {len(orders)} orders")
    for order in orders:
        assert f"- {order['action']} {order['quantity']:g} {order['symbol']}: filled" in message


def notification_of(demo: DemoProcess, event_id: str, within_seconds: float = 20) -> str:
    """The notification the demo printed for this event (its title line to its `Event` line)."""
    deadline = time.monotonic() + within_seconds
    pattern = re.compile(rf"(notification: [^\n]*\n(?:(?!  notification:)[^\n]*\n)*?\s*Event {event_id})")
    while time.monotonic() < deadline:
        found = pattern.search(demo.printed())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"the demo printed no notification of {event_id}:\n{demo.printed()[-3000:]}")


def test_a_live_rebalance_without_the_typed_account_is_refused(
    page: Page, demo: DemoProcess, api_key: str
) -> None:
    sign_in(page, api_key)
    before = api_events(demo, LIVE_ACCOUNT)
    page.goto(f"/ui/accounts/{LIVE_ACCOUNT}")
    token = page.locator("#live-form input[name=csrf_token]").get_attribute("value") or ""
    answer = page.request.post(
        "/ui/actions/rebalance",
        form={
            "account_id": LIVE_ACCOUNT,
            "confirm_account": "DU000000",
            "allow_live": "true",
            "csrf_token": token,
        },
    )
    assert answer.status == 422
    assert api_events(demo, LIVE_ACCOUNT) == before


def test_a_forged_form_without_the_csrf_token_is_refused(demo: DemoProcess, api_key: str) -> None:
    before = api_events(demo, ACCOUNT)
    with httpx.Client(base_url=demo.base_url, timeout=5) as client:
        token = CSRF.search(client.get("/ui/signin").text)
        assert token is not None
        signed = client.post("/ui/signin", data={"api_key": api_key, "csrf_token": token.group(1)})
        assert signed.status_code == 303
        forged = client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT})
        assert forged.status_code == 403
        wrong = client.post("/ui/actions/dry-run", data={"account_id": ACCOUNT, "csrf_token": "x" * 43})
        assert wrong.status_code == 403
    assert api_events(demo, ACCOUNT) == before


def test_the_key_is_in_no_page_and_no_cookie(
    page: Page, context: BrowserContext, demo: DemoProcess, api_key: str, screenshots: Path
) -> None:
    sign_in(page, api_key)
    event_id = api_events(demo, ACCOUNT)[0]["event_id"]
    failing = needs_attention_event(demo, api_key)
    for path, shot in (
        ("/ui", "overview.png"),
        ("/ui/queue", "queue.png"),
        ("/ui/accounts", "accounts.png"),
        (f"/ui/accounts/{ACCOUNT}", None),
        (f"/ui/events/{event_id}", None),
        (f"/ui/events/{failing}", None),
        ("/ui/signin", None),
    ):
        page.goto(path)
        assert api_key not in page.content(), path
        assert api_key not in page.url
        if shot:
            page.screenshot(path=screenshots / shot, full_page=True)
    cookies = context.cookies()
    assert [c["name"] for c in cookies] == ["rebalancer_console"]
    assert all(api_key not in c["value"] for c in cookies)
    assert cookies[0]["httpOnly"]
    assert cookies[0]["sameSite"] == "Strict"


def test_the_overview_shows_counts_chart_and_heartbeats_and_fits_a_phone(
    page: Page, screenshots: Path
) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/ui")
    expect(page.locator("#counts .card")).to_have_count(6)
    expect(page.locator("#services")).to_contain_text("event-processor")
    expect(page.locator("#activity svg rect.bar.completed").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone (only tables may)"
    page.screenshot(path=screenshots / "overview-phone.png", full_page=True)


def test_sign_out_ends_the_session(page: Page, api_key: str) -> None:
    sign_in(page, api_key)
    page.click("#sign-out")
    expect(page.locator("#read-only")).to_be_visible()
    page.goto(f"/ui/accounts/{ACCOUNT}")
    assert page.locator("#dry-run-form").count() == 0
