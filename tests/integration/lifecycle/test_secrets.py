"""An error text holding the allocation API key, the IB password and the database password is stored
(Redis, PostgreSQL) and served (`GET /queue/events`, `GET /events/{id}`) without them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.accounts import Account, RebalancingSettings
from rebalancer_shared.config import load_settings
from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.logging import register_settings_secrets
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore, RunRecord, RunStatus
from tests.integration.queue.helpers import make_event
from tests.support.servers import REDIS_URL


async def test_an_error_with_every_secret_is_stored_and_served_without_them(
    queue: EventQueue, store: EventStore
) -> None:
    key, ib_password, db_password = (f"{name}-{uuid.uuid4().hex}" for name in ("alloc", "ib", "db"))
    settings = load_settings(
        environ={
            "ALLOCATIONS_API_KEY": key,
            "IB_PASSWORD": ib_password,
            "DATABASE_URL": f"postgresql://postgres:{db_password}@127.0.0.1:5432/rebalancer",
            "REDIS_URL": REDIS_URL,
        }
    )
    register_settings_secrets(settings)
    lifecycle = EventLifecycle(queue, store)
    event = make_event("DU1", Command.REBALANCE)
    await lifecycle.submit(event)
    claim = await lifecycle.claim("w", 0)
    assert claim is not None
    echoed = f"HTTP 401: key {key} rejected; gateway login {ib_password}; postgres password {db_password}"
    await store.save_run(
        RunRecord(
            event_id=event.event_id,
            attempt=1,
            account_id="DU1",
            exec_command="rebalance",
            execution_mode="live",
            worker="w",
            status=RunStatus.FAILED,
            started_at=datetime.now(UTC),
            error=echoed,
            message=echoed,
        )
    )
    await lifecycle.fail(claim, echoed, retry_delay_seconds=300)

    accounts = {"DU1": Account("DU1", "chan", RebalancingSettings())}
    app = create_app(settings, services=Services(lifecycle, accounts, HealthPolicy()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http:
        live = (await http.get("/queue/events")).text
        history = (await http.get(f"/events/{event.event_id}")).text
    stored = await queue.record(str(event.event_id))
    for text in (live, history, repr(stored)):
        for secret in (key, ib_password, db_password):
            assert secret not in text
    assert "key *** rejected; gateway login ***; postgres password ***" in history
