"""Everyday mistakes answered by the `rebalancer` command in one line, with a documented exit code
(2 configuration, 3 a server cannot be used), no traceback, and nothing half-accepted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore
from tests.integration.first_contact.helpers import (
    ACCOUNTS_YAML,
    assert_one_line_error,
    rebalancer,
)
from tests.support.servers import (
    REDIS_URL,
    create_database,
    database_url,
    drop_database,
    free_port,
)


def test_a_malformed_redis_url_names_the_variable_and_the_form(folder: Path, env: dict[str, str]) -> None:
    result = rebalancer(folder, env | {"REDIS_URL": "localhost:6379"}, "queue", "status")
    assert_one_line_error(result, 2, "environment variable REDIS_URL", "redis://", "'localhost:6379'")


def test_a_malformed_database_url_names_the_variable(folder: Path, env: dict[str, str]) -> None:
    result = rebalancer(
        folder, env | {"DATABASE_URL": "mysql://x@h/db"}, "trigger", "DU123456", "print-equity"
    )
    assert_one_line_error(result, 2, "environment variable DATABASE_URL", "postgresql://")


def test_an_unreachable_redis_is_named_without_its_password(folder: Path, env: dict[str, str]) -> None:
    port = free_port()
    url = f"redis://:s3cret-word@127.0.0.1:{port}/0"
    result = rebalancer(folder, env | {"REDIS_URL": url}, "queue", "status")
    line = assert_one_line_error(result, 3, f"Redis at redis://:***@127.0.0.1:{port}/0 does not answer")
    assert "s3cret-word" not in result.stderr
    assert "REDIS_URL" in line


def test_an_unreachable_postgresql_is_named_and_nothing_is_queued(
    folder: Path, env: dict[str, str], prefix: str
) -> None:
    port = free_port()
    url = f"postgresql://postgres:pg-s3cret@127.0.0.1:{port}/rebalancer"
    result = rebalancer(folder, env | {"DATABASE_URL": url}, "trigger", "DU123456", "print-positions")
    assert_one_line_error(result, 3, f"PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/rebalancer")
    assert "pg-s3cret" not in result.stderr
    status = json.loads(rebalancer(folder, env, "queue", "status").stdout)
    assert status["queue_length"] == 0


def test_a_missing_database_is_created_on_first_use(folder: Path, env: dict[str, str]) -> None:
    name = f"rebalancer_test_{uuid.uuid4().hex[:12]}"
    try:
        result = rebalancer(
            folder, env | {"DATABASE_URL": database_url(name)}, "trigger", "DU123456", "print-equity"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["outcome"] == "queued"
    finally:
        drop_database(name)


def test_a_missing_schema_without_migrations_says_what_to_run(folder: Path, env: dict[str, str]) -> None:
    name = create_database(apply_init_sql=False)
    try:
        variables = {"DATABASE_URL": database_url(name), "DATABASE_MIGRATE_ON_START": "false"}
        result = rebalancer(folder, env | variables, "trigger", "DU123456", "print-equity")
        assert_one_line_error(result, 2, "none (no tables)", "run `./rebalancer db upgrade`")
        upgraded = rebalancer(folder, env | {"DATABASE_URL": database_url(name)}, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        again = rebalancer(folder, env | variables, "trigger", "DU123456", "print-equity")
        assert json.loads(again.stdout)["outcome"] == "queued"
    finally:
        drop_database(name)


@pytest.mark.parametrize(
    ("accounts_yaml", "needles"),
    [
        (None, ["invalid accounts file", "accounts.yaml: cannot read accounts file: No such file"]),
        ("- account_id: [unclosed\n", ["accounts.yaml: not valid YAML: line 2, column 1: expected ','"]),
        (ACCOUNTS_YAML + ACCOUNTS_YAML, ["account 'DU123456': key 'account_id': duplicate account id"]),
        (ACCOUNTS_YAML + "  colour: blue\n", ["account 'DU123456': key 'colour': unknown key"]),
        ('- account_id: "DU123456"\n', ["key 'notification.channel': missing"]),
    ],
    ids=["missing", "not-yaml", "duplicate", "unknown-key", "no-channel"],
)
def test_every_accounts_file_mistake_is_one_line(
    folder: Path, env: dict[str, str], accounts_yaml: str | None, needles: list[str]
) -> None:
    accounts = folder / "accounts.yaml"
    if accounts_yaml is None:
        accounts.unlink()
    else:
        accounts.write_text(accounts_yaml)
    result = rebalancer(folder, env, "trigger", "DU123456", "print-positions")
    assert_one_line_error(result, 2, *needles)


def test_a_config_file_mistake_names_the_file_and_key(folder: Path, env: dict[str, str]) -> None:
    (folder / "config.yaml").write_text("processing:\n  max_concurent_events: 4\n")
    result = rebalancer(folder, env, "queue", "status")
    assert_one_line_error(result, 2, "config.yaml", "processing.max_concurent_events")


def test_dotenv_in_the_working_folder_is_read_and_the_environment_wins(
    folder: Path, env: dict[str, str]
) -> None:
    (folder / ".env").write_text("REDIS_URL=not-a-url\n")
    without = {k: v for k, v in env.items() if k != "REDIS_URL"}
    result = rebalancer(folder, without, "queue", "status")
    assert_one_line_error(result, 2, ".env: variable REDIS_URL", "'not-a-url'")
    result = rebalancer(folder, env, "queue", "status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queue_length"] == 0


@pytest.fixture
def env(deployment_env: dict[str, str]) -> dict[str, str]:
    return deployment_env


@pytest.fixture
def refusing_history(fresh_database_url: str) -> str:
    """A history whose `events` table refuses inserts, until the test drops the trigger."""
    conninfo = fresh_database_url.replace("+psycopg", "")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'history is read-only'; "
            "END $$ LANGUAGE plpgsql"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
    return conninfo


async def test_a_trigger_whose_history_write_fails_is_accepted_and_its_history_follows(
    folder: Path, env: dict[str, str], refusing_history: str, prefix: str
) -> None:
    result = rebalancer(folder, env, "trigger", "DU123456", "print-positions")
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    assert accepted["outcome"] == "queued"
    assert "history write postponed: the outbox keeps it" in result.stderr
    assert "history is read-only" in result.stderr
    again = json.loads(rebalancer(folder, env, "trigger", "DU123456", "print-positions").stdout)
    assert again == {"event_id": accepted["event_id"], "outcome": "duplicate"}, "one trigger, one event"

    with psycopg.connect(refusing_history, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON events")
    client = Redis.from_url(REDIS_URL)
    history_db = EventStore.from_url(refusing_history)
    try:
        drained = await EventLifecycle(EventQueue(client, prefix), history_db).outbox.drain()
        history = await history_db.history(uuid.UUID(accepted["event_id"]))
    finally:
        await history_db.close()
        await client.aclose()
    assert drained == 2  # what any running service's drainer does
    assert history is not None
    assert [t.state for t in history.transitions] == ["queued", "duplicate"]


def test_a_missing_database_the_user_may_not_create_names_the_createdb_to_run(
    folder: Path, env: dict[str, str], role_without_createdb: str
) -> None:
    name = f"rebalancer_test_{uuid.uuid4().hex[:12]}"
    url = make_url(database_url(name)).set(username=role_without_createdb, password=None)
    result = rebalancer(
        folder,
        env | {"DATABASE_URL": url.render_as_string(hide_password=False)},
        "trigger",
        "DU123456",
        "print-equity",
    )
    assert_one_line_error(result, 3, f'database "{name}" does not exist', "may not create it", "createdb")
    assert json.loads(rebalancer(folder, env, "queue", "status").stdout)["queue_length"] == 0
