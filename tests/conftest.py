"""Fixtures shared by the whole suite: a key prefix per test, a database per session, servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from redis.asyncio import Redis

from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.redis_connection import open_redis
from rebalancer_shared.store import EventStore
from tests.support.servers import (
    REDIS_URL,
    _admin_url,
    create_database,
    database_url,
    delete_prefix,
    drop_database,
    sync_redis,
)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = sync_redis()
    try:
        delete_prefix(client, name)
    finally:
        client.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = open_redis(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def queue(redis_client: Redis, prefix: str) -> EventQueue:
    return EventQueue(redis_client, prefix, lease_seconds=30.0)


@pytest.fixture
def lifecycle(queue: EventQueue, store: EventStore) -> EventLifecycle:
    """The transitions of this test's queue, with the history in the session's database."""
    return EventLifecycle(queue, store)


@pytest.fixture(scope="session")
def session_database() -> Iterator[str]:
    """A database for the whole session with init.sql applied; dropped at the end."""
    name = create_database()
    yield database_url(name)
    drop_database(name)


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """A database of this test's own with init.sql applied."""
    name = create_database()
    yield database_url(name)
    drop_database(name)


@pytest.fixture
async def store(session_database: str) -> AsyncIterator[EventStore]:
    event_store = EventStore.from_url(session_database)
    yield event_store
    await event_store.close()


@pytest.fixture
async def fresh_store(fresh_database_url: str) -> AsyncIterator[EventStore]:
    event_store = EventStore.from_url(fresh_database_url)
    yield event_store
    await event_store.close()


@pytest.fixture
def role_without_createdb() -> Iterator[str]:
    """A PostgreSQL login role that may not create databases (dropped afterwards)."""
    role = f"rebalancer_test_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    yield role
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
