"""How the operator commands reach a deployment, and how they say that they cannot.

They read the configuration as the services do (config.yaml, the environment, .env) and open Redis
and PostgreSQL through the same code, without waiting: a server that does not answer, a bad URL, a
missing database or schema, an accounts-file mistake is one line on stderr and an exit code
(`rebalancer_shared.startup`: 2 configuration, 3 a server cannot be used), never a traceback. The
database is created and migrated when needed, as a service would at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import configure_logging, register_settings_secrets
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.redis_connection import check_redis, open_redis, redis_unavailable
from rebalancer_shared.startup import EXIT_CONFIG, failure_of
from rebalancer_shared.store import EventStore
from rebalancer_shared.store.schema import prepare_database_async, sync_url, unavailable

T = TypeVar("T")
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
Work = Callable[[EventQueue, EventStore | None, Settings], Awaitable[T]]


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


@contextlib.asynccontextmanager
async def _connected(
    settings: Settings, history: bool
) -> AsyncIterator[tuple[EventQueue, EventStore | None]]:
    await check_redis(settings.redis.url)
    if history:
        await prepare_database_async(settings.database.url, migrate=settings.database.migrate_on_start)
    redis = open_redis(settings.redis.url, fail_fast=True)
    store = EventStore.from_url(settings.database.url) if history else None
    try:
        yield EventQueue(redis, settings.redis.key_prefix), store
    finally:
        if store is not None:
            await store.close()
        await redis.aclose()


def _explain(exc: Exception, settings: Settings) -> tuple[int, str] | None:
    if isinstance(exc, RedisError | OSError):
        exc = redis_unavailable(settings.redis.url, exc)
    elif isinstance(exc, OperationalError | InterfaceError):
        exc = unavailable(sync_url(settings.database.url), exc)
    return failure_of(exc)


def run_on_deployment(work: Work[T], settings: Settings | None = None, *, history: bool = True) -> T:
    """Run `work` on the deployment's queue (and history store, unless `history` is False)."""
    settings = settings or cli_settings()

    async def go() -> T:
        async with _connected(settings, history) as (queue, store):
            return await work(queue, store, settings)

    try:
        return asyncio.run(go())
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        known = _explain(exc, settings)
        if known is None:
            raise
        fail(known[1], known[0])
