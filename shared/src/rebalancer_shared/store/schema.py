"""The history database and its schema, owned by the Alembic migrations in `store/migrations/`.

Every service and the `rebalancer` CLI call `prepare_database` before they touch the history:

1. The database must exist. When it does not and the URL's user may create databases, it is created
   (a fresh PostgreSQL needs nothing done by hand); otherwise one line says what to run.
2. With `migrate` (the default, `DATABASE_MIGRATE_ON_START`), pending migrations are applied under a
   PostgreSQL advisory lock, so three services starting at once migrate once and the others wait for
   it. Without it, a schema behind this release stops the caller with the command that upgrades it.
3. A database made by the first release's init.sql (its tables, no `alembic_version`) is adopted as
   revision 0001 with its rows untouched, then upgraded like any other.

init.sql is `schema_sql()`: the migrations rendered for PostgreSQL (`rebalancer db sql > init.sql`);
a test holds the file equal to it. It is for applying the schema by hand (psql) where the services'
user may not change it. SQLite (the embedded demo) gets the ORM's tables directly.

A new revision: add `migrations/versions/rNNNN_<what>.py` in the shape of `script.py.mako`, with
`down_revision` set to the current head, and regenerate init.sql.
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from rebalancer_shared.errors import SchemaError, ServerRefusedError, ServerUnavailableError
from rebalancer_shared.store.tables import Base
from rebalancer_shared.urls import redact_url

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
# pg_advisory_lock key held while migrating: one schema change at a time per PostgreSQL server.
MIGRATION_LOCK_KEY = 7_310_420_011
CONNECT_TIMEOUT_SECONDS = 5
_LEGACY_TABLES = {"events", "event_transitions", "runs", "orders", "deployment_facts"}
_REFUSED = re.compile(r"authentication failed|role .* does not exist|no pg_hba.conf entry|SSL", re.IGNORECASE)
_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')
_INSUFFICIENT_PRIVILEGE = "42501"
# A concurrent CREATE DATABASE of the same name fails with one of these: another process won.
_DUPLICATE_DATABASE = ("42P04", "23505")
SQL_HEADER = """\
-- The PostgreSQL schema of the rebalancer's history, generated from the Alembic migrations
-- (shared/src/rebalancer_shared/store/migrations) by `./rebalancer db sql > init.sql`; do not edit.
-- The services create and upgrade the schema themselves at start; apply this file by hand only where
-- their database user may not change the schema (then set DATABASE_MIGRATE_ON_START=false).
"""


@dataclass(frozen=True)
class SchemaReport:
    """What `prepare_database` found and did."""

    database: str
    created_database: bool = False
    adopted_legacy_schema: bool = False
    before: str | None = None
    after: str | None = None

    @property
    def upgraded(self) -> bool:
        return self.before != self.after


def _config(connection: Connection | None = None, output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the versions folder is never empty
    return head


def schema_sql() -> str:
    """Every migration rendered as PostgreSQL statements: the text of init.sql."""
    output = io.StringIO()
    command.upgrade(_config(output=output), "head", sql=True)
    lines = [line.rstrip() for line in output.getvalue().strip().splitlines()]
    return SQL_HEADER + "\n".join(lines) + "\n"


def sync_url(url: str) -> URL:
    """The SQLAlchemy URL for a synchronous connection (psycopg 3 serves both; SQLite without aiosqlite)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise SchemaError(f"{redact_url(url)}: unsupported database (use postgresql:// or sqlite://)")


def _engine(url: URL) -> Engine:
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})


def _shown(url: URL) -> str:
    """The URL as a person writes it (`postgresql://`, no driver), its password hidden."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """The server's words without libpq's framing: 'Connection refused', 'password authentication ...'."""
    message = str(exc.orig or exc).strip().splitlines()[0]
    message = message.removeprefix("connection failed: ").rsplit(" failed: ", 1)[-1]
    return re.sub(r"^FATAL:\s+", "", message).strip()


def unavailable(url: URL, exc: DBAPIError) -> ServerUnavailableError:
    """The one-line error for a PostgreSQL that cannot be reached or refuses the connection."""
    reason = _reason(exc)
    if _REFUSED.search(reason):
        return ServerRefusedError(
            f"PostgreSQL at {_shown(url)} refuses the connection: {reason} (fix DATABASE_URL)"
        )
    return ServerUnavailableError(
        f"PostgreSQL at {_shown(url)} does not answer: {reason} "
        "(start it, or set DATABASE_URL to a server that runs)"
    )


def _create_database(url: URL, name: str) -> None:
    for maintenance in ("postgres", "template1"):
        admin = _engine(url.set(database=maintenance)).execution_options(isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
                return
        except OperationalError as exc:
            if maintenance == "template1":
                raise unavailable(url, exc) from exc
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate in _DUPLICATE_DATABASE:
                return  # another process created it first
            if sqlstate == _INSUFFICIENT_PRIVILEGE:
                raise _cannot_create(url, name) from exc
            raise
        finally:
            admin.dispose()


def _cannot_create(url: URL, name: str) -> ServerRefusedError:
    user = url.username or "postgres"
    return ServerRefusedError(
        f'database "{name}" does not exist on {url.host}:{url.port or 5432} and user "{user}" may not '
        f"create it: run `createdb -h {url.host} -p {url.port or 5432} -O {user} {name}` as a user "
        "who may (or set DATABASE_URL to an existing database), then start again"
    )


def _ensure_database(url: URL) -> bool:
    """Connect once; create the database if it is missing. True when it was created."""
    try:
        with _engine(url).connect():
            return False
    except OperationalError as exc:
        missing = _MISSING_DATABASE.search(str(exc.orig))
        if missing is None:
            raise unavailable(url, exc) from exc
    _create_database(url, missing.group(1))
    return True


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _known(revision: str | None) -> bool:
    if revision is None:
        return True
    scripts = ScriptDirectory.from_config(_config())
    return any(script.revision == revision for script in scripts.walk_revisions())


def _newer_than_release(url: URL, revision: str) -> SchemaError:
    return SchemaError(
        f"the database {_shown(url)} is at schema revision {revision}, which this release does not "
        f"know (its newest is {head_revision()}): a newer release migrated it; run that release"
    )


def _is_legacy(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    if not tables & _LEGACY_TABLES:
        return False
    if not tables >= _LEGACY_TABLES:
        missing = ", ".join(sorted(_LEGACY_TABLES - tables))
        raise SchemaError(
            f"the database has some of the history tables but not {missing}, and no migration record: "
            "restore it from a backup, or point DATABASE_URL at an empty database"
        )
    return True


def _upgrade(conn: Connection, url: URL) -> tuple[str | None, bool]:
    before = _current(conn)
    if not _known(before):
        raise _newer_than_release(url, str(before))
    adopted = before is None and _is_legacy(conn)
    conn.commit()
    config = _config(conn)
    if adopted:
        command.stamp(config, BASELINE)
        conn.commit()
    command.upgrade(config, "head")
    conn.commit()
    return before, adopted


def _migrate(url: URL) -> SchemaReport:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                before, adopted = _upgrade(conn, url)
                after = _current(conn)
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            raise SchemaError(
                f'user "{url.username}" may not change the schema of {_shown(url)}: run '
                "`./rebalancer db upgrade` as the database's owner (or apply init.sql with psql), "
                "and set DATABASE_MIGRATE_ON_START=false"
            ) from exc
        if isinstance(exc, OperationalError):
            raise unavailable(url, exc) from exc
        raise
    finally:
        engine.dispose()
    return SchemaReport(_shown(url), adopted_legacy_schema=adopted, before=before, after=after)


def check_schema(url: URL) -> SchemaReport:
    """Raise `SchemaError` (naming the command to run) unless the database is at this release's head."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            current = _current(conn)
    except OperationalError as exc:
        raise unavailable(url, exc) from exc
    finally:
        engine.dispose()
    head = head_revision()
    if current == head:
        return SchemaReport(_shown(url), before=current, after=current)
    if not _known(current):
        raise _newer_than_release(url, str(current))
    raise SchemaError(
        f"the database {_shown(url)} is at schema revision {current or 'none (no tables)'} and this "
        f"release needs {head}: run `./rebalancer db upgrade` (DATABASE_MIGRATE_ON_START is off)"
    )


def _prepare_sqlite(url: URL) -> SchemaReport:
    engine = create_engine(url, poolclass=NullPool)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    return SchemaReport(_shown(url))


def prepare_database(url: str, *, migrate: bool = True) -> SchemaReport:
    """Make the database at `url` ready for this release (see the module's docstring)."""
    target = sync_url(url)
    if target.get_backend_name() == "sqlite":
        return _prepare_sqlite(target)
    created = _ensure_database(target)
    report = _migrate(target) if migrate else check_schema(target)
    return SchemaReport(report.database, created, report.adopted_legacy_schema, report.before, report.after)


async def prepare_database_async(url: str, *, migrate: bool = True) -> SchemaReport:
    """`prepare_database` off the event loop (Alembic and the checks are synchronous)."""
    return await asyncio.to_thread(prepare_database, url, migrate=migrate)
