"""An app per test on the test's own Redis prefix (and the session's database), and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account, load_accounts
from rebalancer_shared.config import Settings
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.management.helpers import API_KEY, make_settings, write_accounts_file


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return write_accounts_file(tmp_path / "accounts.yaml")


@pytest.fixture
def accounts(accounts_file: Path) -> Mapping[str, Account]:
    return load_accounts(accounts_file)


@pytest.fixture
def settings(tmp_path: Path, prefix: str, session_database: str, accounts_file: Path) -> Settings:
    return make_settings(tmp_path, prefix=prefix, database_url=session_database, accounts_file=accounts_file)


@pytest.fixture
def services(queue: EventQueue, store: EventStore, accounts: Mapping[str, Account]) -> Services:
    """On the session's database: tests that need a database of their own override this."""
    return Services(lifecycle=EventLifecycle(queue, store), accounts=accounts, health_policy=HealthPolicy())


@pytest.fixture
def app(settings: Settings, services: Services) -> FastAPI:
    return create_app(settings, services=services)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://management.test") as http:
        yield http


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
