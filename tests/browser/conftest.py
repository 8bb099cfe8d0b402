"""A real `rebalancer demo` process per module and Debian's Chromium driven by Playwright.

Chromium is the system's (`/usr/bin/chromium`, or CHROMIUM): Playwright's own browser download cannot
work here. It runs without the background traffic a first start makes (sync, component updates),
which this machine's closed network would only refuse.

Screenshots go to a temporary folder, or to CONSOLE_SCREENSHOTS when set (the README's images are
refreshed with `CONSOLE_SCREENSHOTS=docs/screenshots .venv/bin/pytest tests/browser`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from tests.integration.management.demo_session import DemoProcess, demo_process

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("the browser tests need Debian's chromium (apt-get install chromium; .ci/run does it)")
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    with demo_process(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def api_key(demo: DemoProcess) -> str:
    return demo.export_line().split("=", 1)[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, demo: DemoProcess) -> Iterator[BrowserContext]:
    opened = browser.new_context(base_url=demo.base_url, viewport=LAPTOP)
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
