"""The history schema: owned by the migrations, equal to init.sql and to the ORM models, created on a
fresh server, adopted and upgraded with its rows on a first-release database, migrated once when
several processes start together, and explained in one line when it cannot be."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from rebalancer_shared.errors import SchemaError, ServerRefusedError
from rebalancer_shared.store import EventStore
from rebalancer_shared.store.schema import head_revision, prepare_database, schema_sql
from rebalancer_shared.store.tables import Base
from tests.support.servers import INIT_SQL, ROOT, create_database, database_url, drop_database

FIRST_RELEASE_SQL = ROOT / "tests" / "fixtures" / "init_sql_first_release.sql"
HISTORY_TABLES = {"events", "event_transitions", "runs", "orders", "deployment_facts"}
# Every table of the current schema: the first release's, and the notifications' (revision 0005).
SCHEMA_TABLES = HISTORY_TABLES | {"notifications"}


def describe(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": {c["name"]: (str(c["type"]), c["nullable"]) for c in insp.get_columns(table)},
                "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted(
                    (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                    for fk in insp.get_foreign_keys(table)
                ),
                "indexes": sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table)),
            }
        return out
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def run_sql(url: str, sql: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture
def new_database_name() -> Iterator[str]:
    """A database name nobody created yet; dropped afterwards if the test created it."""
    name = f"rebalancer_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_database(name)


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = create_database(apply_init_sql=False)
    yield database_url(name)
    drop_database(name)


def test_init_sql_is_the_migrations_rendered_as_sql() -> None:
    assert INIT_SQL.read_text() == schema_sql(), "regenerate it: ./rebalancer db sql > init.sql"


def test_a_missing_database_is_created_and_migrated_to_the_orm_models_schema(
    new_database_name: str, empty_database: str
) -> None:
    url = database_url(new_database_name)
    report = prepare_database(url)
    assert report.created_database
    assert (report.before, report.after) == (None, head_revision())
    engine = create_engine(empty_database)
    Base.metadata.create_all(engine)
    engine.dispose()
    migrated, from_models = describe(url), describe(empty_database)
    assert set(migrated) == SCHEMA_TABLES | {"alembic_version"}
    for table in SCHEMA_TABLES:
        assert migrated[table] == from_models[table], table


def test_init_sql_applied_by_hand_equals_the_migrated_database(new_database_name: str) -> None:
    by_hand = create_database(apply_init_sql=True)
    try:
        migrated_url = database_url(new_database_name)
        prepare_database(migrated_url)
        assert describe(database_url(by_hand)) == describe(migrated_url)
        assert revision_of(database_url(by_hand)) == head_revision()
        again = prepare_database(database_url(by_hand))
        assert not again.upgraded
        assert not again.created_database
    finally:
        drop_database(by_hand)


FIRST_RELEASE_ROWS = """
INSERT INTO events VALUES ('{id}', 1, 'DU123456', 'rebalance', 'ably', '{{"exec": "rebalance"}}', 'm-1:0',
  'completed', 1, NULL, now() - interval '1 day', now(), now());
INSERT INTO event_transitions (event_id, state, times_queued, detail, at) VALUES
  ('{id}', 'queued', 1, NULL, now() - interval '1 day'),
  ('{id}', 'processing', 1, 'worker w1', now() - interval '1 day'),
  ('{id}', 'completed', 1, NULL, now());
INSERT INTO runs VALUES ('{run}', '{id}', 1, 'DU123456', 'rebalance', 'live', 'w1', 'success',
  '1 order(s) filled', NULL, NULL, '{{"orders": 1}}', NULL, now() - interval '1 day', now());
INSERT INTO orders (run_id, event_id, symbol, action, quantity, order_type, limit_price, broker_order_id,
  perm_id, order_ref, status, filled_quantity, avg_fill_price, created_at, updated_at) VALUES
  ('{run}', '{id}', 'AAA', 'BUY', 3, 'MKT', NULL, 7, 70, '{id}', 'Filled', 3, 10.5, now(), now());
INSERT INTO deployment_facts VALUES ('redis_marker:rebalancer', '2026-11-01T00:00:00+00:00', now());
"""


def _write_history(url: str) -> uuid.UUID:
    """History as the first release wrote it (its schema has no outbox columns)."""
    event_id = uuid.uuid4()
    run_sql(url, FIRST_RELEASE_ROWS.format(id=event_id, run=uuid.uuid4()))
    return event_id


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in sorted(HISTORY_TABLES)
        }


async def test_a_first_release_database_with_history_is_adopted_and_keeps_every_row(
    empty_database: str,
) -> None:
    run_sql(empty_database, FIRST_RELEASE_SQL.read_text())
    event_id = _write_history(empty_database)
    before = _counts(empty_database)
    assert before == {"deployment_facts": 1, "event_transitions": 3, "events": 1, "orders": 1, "runs": 1}

    report = prepare_database(empty_database)

    assert report.adopted_legacy_schema
    assert report.after == head_revision()
    assert _counts(empty_database) == before
    store = EventStore.from_url(empty_database)
    try:
        history = await store.history(event_id)
        assert await store.get_fact("redis_marker:rebalancer") == "2026-11-01T00:00:00+00:00"
    finally:
        await store.close()
    assert history is not None
    assert history.event.status == "completed"
    assert [o.perm_id for o in history.orders] == [70]


def test_three_processes_upgrading_a_missing_database_at_once_all_succeed(new_database_name: str) -> None:
    url = database_url(new_database_name, "postgresql")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "rebalancer_cli", "db", "upgrade"],
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "CONFIG_FILE": str(ROOT / "config.yaml")},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], results
    assert revision_of(url) == head_revision()
    assert set(describe(database_url(new_database_name))) == SCHEMA_TABLES | {"alembic_version"}


def test_without_migrations_a_database_behind_the_release_names_the_command_to_run(
    empty_database: str,
) -> None:
    with pytest.raises(SchemaError, match=rf"needs {head_revision()}: run `./rebalancer db upgrade`"):
        prepare_database(empty_database, migrate=False)


def test_a_database_migrated_by_a_newer_release_is_refused(empty_database: str) -> None:
    prepare_database(empty_database)
    run_sql(empty_database, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="revision 9999, which this release does not know"):
        prepare_database(empty_database)


def test_a_database_with_only_some_history_tables_is_refused(empty_database: str) -> None:
    run_sql(empty_database, "CREATE TABLE events (event_id UUID PRIMARY KEY)")
    with pytest.raises(SchemaError, match="has some of the history tables but not deployment_facts"):
        prepare_database(empty_database)


def test_a_user_who_may_not_create_the_missing_database_is_told_what_to_run(
    role_without_createdb: str, new_database_name: str
) -> None:
    url = make_url(database_url(new_database_name)).set(username=role_without_createdb, password=None)
    with pytest.raises(ServerRefusedError) as caught:
        prepare_database(url.render_as_string(hide_password=False))
    message = str(caught.value)
    assert f'database "{new_database_name}" does not exist' in message
    assert (
        f"may not create it: run `createdb -h {url.host} -p {url.port or 5432} -O {role_without_createdb}"
        in (message)
    )
