"""How the operator commands reach a deployment, and how they say that they cannot.

They read the configuration as the services do (config.yaml, the environment, .env) and open Redis
and PostgreSQL through the same code, without waiting: a server that does not answer, a bad URL, a
missing database or schema, an accounts-file mistake is one line on stderr and an exit code
(`rebalancer_shared.startup`: 2 configuration, 3 a server cannot be used), never a traceback. The
database is created and migrated when needed, as a service would at start.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, TypeVar

import typer
from redis.exceptions import AuthenticationError, RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import configure_logging, register_settings_secrets
from rebalancer_shared.redis_connection import check_redis, redis_unavailable
from rebalancer_shared.resources import Resources, open_resources
from rebalancer_shared.startup import EXIT_CONFIG, failure_of
from rebalancer_shared.store.schema import prepare_database_async, sync_url, unavailable
from rebalancer_shared.transient import is_transient

T = TypeVar("T")
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
Work = Callable[[Resources], Awaitable[T]]


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def cli_settings() -> Settings:
    """The deployment's settings; a configuration mistake exits 2 with the line that names it."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    # Output is JSON on stdout; warnings and errors go to stderr (LOG_LEVEL=INFO shows every step).
    configure_logging(max(settings.logging.level, "WARNING", key=_LEVELS.index), "console", sys.stderr)
    register_settings_secrets(settings)
    return settings


async def _ready(settings: Settings, history: bool) -> None:
    await check_redis(settings.redis.url)
    if history:
        await prepare_database_async(settings.database.url, migrate=settings.database.migrate_on_start)


def _explain(exc: Exception, settings: Settings) -> tuple[int, str] | None:
    if isinstance(exc, RedisError | OSError) and (is_transient(exc) or isinstance(exc, AuthenticationError)):
        exc = redis_unavailable(settings.redis.url, exc)
    elif isinstance(exc, OperationalError | InterfaceError):
        exc = unavailable(sync_url(settings.database.url), exc)
    return failure_of(exc)


def run_on_deployment(
    work: Work[T],
    settings: Settings | None = None,
    *,
    history: bool = True,
    accounts: Mapping[str, Account] | None = None,
) -> T:
    """Run `work` on the deployment (the history database is checked and migrated unless `history`
    is False: reading the queue needs Redis alone)."""
    settings = settings or cli_settings()

    async def go() -> T:
        await _ready(settings, history)
        async with open_resources(settings, accounts=accounts or {}, fail_fast=True) as resources:
            return await work(resources)

    try:
        return asyncio.run(go())
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        known = _explain(exc, settings)
        if known is None:
            raise
        fail(known[1], known[0])
