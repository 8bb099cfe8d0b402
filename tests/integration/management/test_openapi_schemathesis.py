"""Schemathesis against /openapi.json: no 5xx, and every response conforms to the documented schema.

The app runs its own lifespan (schemathesis starts it on its own event loop), on a database and a
Redis key prefix of this module's own, with fresh heartbeats so that /health is expected to be 200.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans

from management_service.main import create_app
from rebalancer_shared.config import Settings
from rebalancer_shared.queue import QueueKeys
from tests.integration.management.helpers import (
    ACCOUNT_A,
    ACCOUNT_B,
    API_KEY,
    make_settings,
    write_accounts_file,
)
from tests.support.servers import REDIS_URL, create_database, database_url, delete_prefix, drop_database

HEADERS = {"Authorization": f"Bearer {API_KEY}", "X-Allow-Live": "true"}


def _fresh_heartbeats(client: redis.Redis, prefix: str) -> None:
    now = time.time()
    for name in ("event-broker:b1", "event-processor:p1"):
        client.hset(QueueKeys(prefix).heartbeats, name, json.dumps({"state": "running", "at": now}))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    name = create_database()
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        _fresh_heartbeats(client, prefix)
        yield make_settings(
            tmp,
            prefix=prefix,
            database_url=database_url(name),
            accounts_file=write_accounts_file(Path(tmp) / "accounts.yaml"),
        )
    finally:
        shutdown_lifespans()  # closes the app's Redis client and database pool before the drop
        delete_prefix(client, prefix)
        client.close()
        drop_database(name)


def _only_configured_accounts(raw: dict[str, Any]) -> None:
    # The schema cannot know which accounts a deployment has; an unknown one is a documented 422.
    # Narrowing the generated ids to the configured ones lets valid requests be valid in fact.
    account_id = raw["components"]["schemas"]["EnqueueRequest"]["properties"]["account_id"]
    account_id["enum"] = [ACCOUNT_A, ACCOUNT_B]


def _no_invented_cursors(raw: dict[str, Any]) -> None:
    # A cursor is only ever one the API gave out (any other string is a documented 422); the paging
    # itself is walked against a model in test_history_listing.py and test_history_runs_orders.py. So
    # none is generated here.
    for operations in raw["paths"].values():
        listing = operations.get("get", {})
        listing["parameters"] = [p for p in listing.get("parameters", []) if p["name"] != "cursor"]


@pytest.fixture(scope="module")
def api_schema(deployment: Settings) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(deployment))
    _only_configured_accounts(schema.raw_schema)
    _no_invented_cursors(schema.raw_schema)
    return schema


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis' lazy schemas read and rename `node._nodeid`, which pytest 9 no longer has
    # (only the `nodeid` property): give the node the attribute it expects.
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_conforms_to_the_schema(case: Any) -> None:
    case.call_and_validate(headers=HEADERS)
