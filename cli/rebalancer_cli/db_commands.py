"""`rebalancer db ...`: the history database's schema by hand (the services migrate it at start).

`upgrade` creates the database if it is missing (and the user may) and applies pending migrations;
`status` says which revision the database is at and which this release needs; `sql` prints the
schema as SQL (that is init.sql, for applying by hand with psql).
"""

from __future__ import annotations

import asyncio
import json

import typer
from sqlalchemy.exc import InterfaceError, OperationalError

from rebalancer_cli.deployment import cli_settings, fail
from rebalancer_shared.errors import RebalancerError
from rebalancer_shared.startup import failure_of
from rebalancer_shared.store.schema import (
    SchemaReport,
    head_revision,
    prepare_database_async,
    schema_sql,
    sync_url,
    unavailable,
)

db_app = typer.Typer(help="The history database: create, upgrade, inspect its schema.", no_args_is_help=True)


def _prepare(migrate: bool) -> SchemaReport:
    settings = cli_settings()
    try:
        return asyncio.run(prepare_database_async(settings.database.url, migrate=migrate))
    except (OperationalError, InterfaceError) as exc:
        known = failure_of(unavailable(sync_url(settings.database.url), exc))
    except RebalancerError as exc:
        known = failure_of(exc)
        if known is None:
            raise
    assert known is not None
    fail(known[1], known[0])


@db_app.command("upgrade")
def upgrade() -> None:
    """Create the database if it is missing and bring its schema to this release's revision."""
    report = _prepare(migrate=True)
    typer.echo(
        json.dumps(
            {
                "database": report.database,
                "created_database": report.created_database,
                "adopted_legacy_schema": report.adopted_legacy_schema,
                "revision_before": report.before,
                "revision": report.after,
            }
        )
    )


@db_app.command("status")
def status() -> None:
    """Exit 0 when the database's schema is this release's; else exit 2 naming the command to run."""
    report = _prepare(migrate=False)
    typer.echo(json.dumps({"database": report.database, "revision": report.after, "head": head_revision()}))


@db_app.command("sql")
def sql() -> None:
    """Print the whole schema as PostgreSQL statements (the text of init.sql)."""
    typer.echo(schema_sql(), nl=False)
