"""`rebalancer trigger` and `rebalancer queue ...`: an operator's hands on a deployed queue.

They read the same configuration as the services (config.yaml, .env, the environment: REDIS_URL,
DATABASE_URL, ACCOUNTS_FILE, ...) and use the same code: `EventLifecycle` to add and remove events
(queue step, history, counter and log line, as the services do), `EventQueue` to read the queue.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer

from rebalancer_cli.deployment import cli_settings, fail, run_on_deployment
from rebalancer_shared.accounts import Account, AccountsFileError, load_accounts
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.queue import EventNotQueuedError, EventProcessingError
from rebalancer_shared.resources import Resources
from rebalancer_shared.startup import EXIT_CONFIG, EXIT_FAILURE

queue_app = typer.Typer(help="Look at and steer the live queue.", no_args_is_help=True)


def _account(settings: Settings, account_id: str) -> Account:
    try:
        accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    except AccountsFileError as exc:
        fail(f"invalid accounts file: {exc}", EXIT_CONFIG)
    if account_id not in accounts:
        known = ", ".join(accounts) or "none"
        fail(f"account {account_id!r} is not in {settings.accounts_file} (known: {known})", EXIT_CONFIG)
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
    if command.places_orders and not allow_live:
        fail("rebalance trades: add --allow-live to queue a live rebalance", EXIT_CONFIG)

    async def work(res: Resources) -> None:
        event = Event(
            account_id=account_id, exec_command=command, data={"exec": command.value}, source=EventSource.CLI
        )
        result = await res.lifecycle.submit(event)
        typer.echo(json.dumps({"event_id": result.event_id, "outcome": result.outcome.value}))

    settings = cli_settings()
    account = _account(settings, account_id)
    run_on_deployment(work, settings, accounts={account_id: account})


@queue_app.command("status")
def status() -> None:
    """Print the queue's counters as JSON (queue length, processing, retrying, oldest age, ...)."""

    async def work(res: Resources) -> dict[str, Any]:
        return (await res.queue.stats()).__dict__

    typer.echo(json.dumps(run_on_deployment(work, history=False), indent=2))


@queue_app.command("events")
def events(limit: Annotated[int, typer.Option(min=1, max=1000, help="how many, oldest first")] = 100) -> None:
    """Print the live events, oldest first, with their state, retry count, last error, failure class
    and, while one waits, when it runs again."""

    async def work(res: Resources) -> list[dict[str, Any]]:
        return [
            {
                **json.loads(view.event.to_json()),
                "state": view.state.value,
                "rerun": view.rerun,
                "last_error": view.last_error,
                "failure_class": view.failure_class.value if view.failure_class else None,
                "due_at": view.due_at.isoformat() if view.due_at else None,
            }
            for view in await res.queue.list_events(limit)
        ]

    typer.echo(json.dumps(run_on_deployment(work, history=False), indent=2))


def _event_id(event_id: str) -> str:
    try:
        uuid.UUID(event_id)
    except ValueError:
        fail(f"{event_id!r} is not an event id (see `rebalancer queue events`)", EXIT_CONFIG)
    return event_id


@queue_app.command("retry")
def retry(event_id: Annotated[str, typer.Argument(help="the event's id (see `queue events`)")]) -> None:
    """Run a waiting event (retrying, scheduled or needs_attention) as soon as a worker is free.

    A live rebalance outside the trading window is scheduled again by the processor, without a run.
    """
    _event_id(event_id)

    async def work(res: Resources) -> str:
        try:
            outcome = await res.lifecycle.retry_now(event_id, "retry requested by an operator (CLI)")
        except (EventNotQueuedError, EventProcessingError) as exc:
            fail(str(exc), EXIT_FAILURE)
        return json.dumps({"event_id": event_id, "outcome": outcome.value})

    typer.echo(run_on_deployment(work))


@queue_app.command("remove")
def remove(event_id: Annotated[str, typer.Argument(help="the event's id (see `queue events`)")]) -> None:
    """Remove a waiting event (and its dedup key); a processing one cannot be removed."""
    _event_id(event_id)

    async def work(res: Resources) -> str:
        try:
            event = await res.lifecycle.remove(event_id, "removed by an operator (CLI)")
        except (EventNotQueuedError, EventProcessingError) as exc:
            fail(str(exc), EXIT_FAILURE)
        return json.dumps({"event_id": event_id, "status": "removed", "times_queued": event.times_queued})

    typer.echo(run_on_deployment(work))
