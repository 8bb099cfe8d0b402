"""`rebalancer trigger` and `rebalancer queue ...`: an operator's hands on a deployed queue.

They read the same configuration as the services (config.yaml, then the environment: REDIS_URL,
DATABASE_URL, ACCOUNTS_FILE, ...) and use the same code: `submit_event` to add, `EventQueue` to read
and remove, with the history written to PostgreSQL as the services write it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis

from rebalancer_shared.accounts import Account, load_accounts
from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.intake import submit_event
from rebalancer_shared.logging import configure_logging, register_settings_secrets
from rebalancer_shared.metrics import Counter, count
from rebalancer_shared.queue import EventNotQueuedError, EventProcessingError, EventQueue
from rebalancer_shared.store import EventStore, Transition

T = TypeVar("T")
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
queue_app = typer.Typer(help="Look at and steer the live queue.", no_args_is_help=True)


@contextlib.asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[tuple[EventQueue, EventStore]]:
    redis = Redis.from_url(settings.redis.url, socket_connect_timeout=3)
    store = EventStore.from_url(settings.database.url)
    try:
        yield EventQueue(redis, settings.redis.key_prefix), store
    finally:
        await store.close()
        await redis.aclose()


def _run(work: Callable[[EventQueue, EventStore, Settings], Awaitable[T]]) -> T:
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # Output is JSON on stdout; warnings and errors go to stderr (LOG_LEVEL=INFO shows every step).
    configure_logging(max(settings.logging.level, "WARNING", key=_LEVELS.index), "console", sys.stderr)
    register_settings_secrets(settings)

    async def go() -> T:
        async with _connected(settings) as (queue, store):
            return await work(queue, store, settings)

    try:
        return asyncio.run(go())
    except OSError as exc:
        typer.echo(f"error: cannot reach Redis or PostgreSQL: {exc}", err=True)
        raise typer.Exit(3) from None


def _account(settings: Settings, account_id: str) -> Account:
    accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    if account_id not in accounts:
        known = ", ".join(accounts) or "none"
        typer.echo(
            f"error: account {account_id!r} is not in {settings.accounts_file} (known: {known})", err=True
        )
        raise typer.Exit(2)
    return accounts[account_id]


def trigger(
    account_id: Annotated[str, typer.Argument(help="an account of accounts.yaml")],
    command: Annotated[Command, typer.Argument(help="what to run", case_sensitive=True)],
    allow_live: Annotated[bool, typer.Option("--allow-live", help="required for a live rebalance")] = False,
) -> None:
    """Queue COMMAND for ACCOUNT_ID, as a trigger would (deduplicated by account and command).

    `rebalance` places real orders, so it also needs --allow-live; every other command only reads
    the account (or, for cancel-orders, cancels its open orders).
    """
    if command is Command.REBALANCE and not allow_live:
        typer.echo("error: rebalance trades: add --allow-live to queue a live rebalance", err=True)
        raise typer.Exit(2)

    async def work(queue: EventQueue, store: EventStore, settings: Settings) -> None:
        _account(settings, account_id)
        event = Event(
            account_id=account_id, exec_command=command, data={"exec": command.value}, source=EventSource.CLI
        )
        result = await submit_event(queue, store, event)
        typer.echo(json.dumps({"event_id": result.event_id, "outcome": result.outcome.value}))

    _run(work)


@queue_app.command("status")
def status() -> None:
    """Print the queue's counters as JSON (queue length, processing, retrying, oldest age, ...)."""

    async def work(queue: EventQueue, _store: EventStore, _settings: Settings) -> dict[str, Any]:
        return (await queue.stats()).__dict__

    typer.echo(json.dumps(_run(work), indent=2))


@queue_app.command("events")
def events(limit: Annotated[int, typer.Option(min=1, max=1000, help="how many, oldest first")] = 100) -> None:
    """Print the live events, oldest first, with their state, retry count and last error."""

    async def work(queue: EventQueue, _store: EventStore, _settings: Settings) -> list[dict[str, Any]]:
        return [
            {
                **json.loads(view.event.to_json()),
                "state": view.state.value,
                "rerun": view.rerun,
                "last_error": view.last_error,
            }
            for view in await queue.list_events(limit)
        ]

    typer.echo(json.dumps(_run(work), indent=2))


@queue_app.command("remove")
def remove(event_id: Annotated[str, typer.Argument(help="the event's id (see `queue events`)")]) -> None:
    """Remove a queued or retrying event (and its dedup key); a processing one cannot be removed."""
    try:
        uuid.UUID(event_id)
    except ValueError:
        typer.echo(f"error: {event_id!r} is not an event id", err=True)
        raise typer.Exit(2) from None

    async def work(queue: EventQueue, store: EventStore, _settings: Settings) -> str:
        try:
            event = await queue.remove(event_id)
        except (EventNotQueuedError, EventProcessingError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        await store.record(event, Transition.REMOVED, detail="removed by an operator (CLI)")
        await count(queue.redis, queue.keys.prefix, Counter.EVENTS_REMOVED, event.exec_command)
        return json.dumps({"event_id": event_id, "status": "removed", "times_queued": event.times_queued})

    typer.echo(_run(work))
