"""init.sql and the ORM models describe the same schema (applied to two fresh databases, compared)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from rebalancer_shared.store.tables import Base
from tests.support.servers import create_database, database_url, drop_database


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


@pytest.fixture
def two_databases() -> Iterator[tuple[str, str]]:
    from_sql, from_models = create_database(apply_init_sql=True), create_database(apply_init_sql=False)
    try:
        yield database_url(from_sql), database_url(from_models)
    finally:
        drop_database(from_sql)
        drop_database(from_models)


def test_init_sql_matches_the_orm_models(two_databases: tuple[str, str]) -> None:
    sql_url, models_url = two_databases
    engine = create_engine(models_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    from_sql, from_models = describe(sql_url), describe(models_url)
    assert set(from_sql) == {"events", "event_transitions", "runs", "orders", "deployment_facts"}
    for table in from_sql:
        assert from_sql[table] == from_models.get(table), table
    assert from_sql == from_models


def test_init_sql_can_be_applied_twice(two_databases: tuple[str, str]) -> None:
    import psycopg

    from tests.support.servers import INIT_SQL

    sql_url, _ = two_databases
    with psycopg.connect(sql_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(INIT_SQL.read_text().encode())
