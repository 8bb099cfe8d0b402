"""`rebalancer events list|show` and `rebalancer history ACCOUNT`: the PostgreSQL history, for a person
(tables) or a program (`--json`, the management API's shapes: `GET /events`, `GET /events/{id}`,
`GET /runs/{id}`).

They read the same configuration as the services and the store directly, as the other operator
commands do; nothing here changes the queue or the history.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from management_service.history import history_response, run_detail
from management_service.models import EventHistoryResponse, EventRecord, RunDetail
from rebalancer_cli.deployment import fail, run_on_deployment
from rebalancer_shared.events import Command, EventSource
from rebalancer_shared.resources import Resources
from rebalancer_shared.startup import EXIT_CONFIG, EXIT_FAILURE
from rebalancer_shared.store import EventFilter, EventStatus, EventSummary, TimeRange

events_app = typer.Typer(help="Browse the history of events (PostgreSQL).", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (the management API's shape)")]
_WIDE = 200  # tables are not cut to a narrow terminal (or to a pipe's default of 80 columns)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time (like 2026-11-02T14:30:00Z)", EXIT_CONFIG)
    if moment.tzinfo is None:
        fail(f"{option} {value!r} has no zone: add one (Z for UTC, or +01:00)", EXIT_CONFIG)
    return moment


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _short(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=_WIDE).print(table)


def _event_rows(events: Sequence[EventSummary]) -> list[tuple[object, ...]]:
    return [
        (
            _when(e.created_at),
            e.event_id,
            e.account_id,
            e.exec_command.value,
            e.source.value,
            e.status.value,
            e.times_queued,
            _short(e.last_error),
        )
        for e in events
    ]


@events_app.command("list")
def list_events(
    account: Annotated[str | None, typer.Option(help="only this account")] = None,
    command: Annotated[Command | None, typer.Option(help="only this command", case_sensitive=True)] = None,
    state: Annotated[EventStatus | None, typer.Option(help="only events in this state")] = None,
    source: Annotated[EventSource | None, typer.Option(help="only events from this source")] = None,
    since: Annotated[str | None, typer.Option(help="accepted at or after (ISO 8601, with zone)")] = None,
    until: Annotated[str | None, typer.Option(help="accepted before (ISO 8601, with zone)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="how many, newest first")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The history's events, newest first, finished and removed ones included."""
    where = EventFilter(
        account_id=account,
        exec_command=command.value if command else None,
        status=state.value if state else None,
        source=source.value if source else None,
        accepted=TimeRange(_time(since, "--since"), _time(until, "--until")),
    )

    async def work(res: Resources) -> list[EventSummary]:
        return await res.store.list_events(where, limit)

    found = run_on_deployment(work)
    if as_json:
        _print_json([EventRecord.model_validate(e).model_dump(mode="json") for e in found])
        return
    columns = ("accepted (UTC)", "event id", "account", "command", "source", "state", "runs", "last error")
    _table(f"{len(found)} event(s), newest first", columns, _event_rows(found))


def _print_history(history: EventHistoryResponse) -> None:
    event = history.event
    typer.echo(f"event {event.event_id}: {event.exec_command} for {event.account_id} ({event.source})")
    typer.echo(
        f"state {event.status}, queued {event.times_queued} time(s); accepted {_when(event.created_at)}"
    )
    steps = [(_when(t.at), t.state, t.failure_class or "", _short(t.detail, 80)) for t in history.transitions]
    _table("transitions", ("at (UTC)", "state", "class", "detail"), steps)
    for run in history.runs:
        _print_run(run.run_id, run.status, run.execution_mode, run.message or run.error, run.orders)


def _print_run(run_id: uuid.UUID, status: str, mode: str, said: str | None, orders: Sequence[Any]) -> None:
    lines = [
        (
            o.symbol,
            o.action,
            o.quantity,
            o.filled_quantity,
            o.avg_fill_price or "",
            o.status,
            _short(o.message),
        )
        for o in orders
    ]
    title = f"run {run_id}: {status} ({mode}) {_short(said, 80)}"
    _table(title, ("symbol", "side", "quantity", "filled", "avg price", "status", "broker said"), lines)


@events_app.command("show")
def show_event(
    event_id: Annotated[str, typer.Argument(help="the event's id (see `events list`)")],
    as_json: JsonFlag = False,
) -> None:
    """One event's life: its transitions, each run and the orders it placed."""
    wanted = _uuid(event_id)

    async def work(res: Resources) -> EventHistoryResponse | None:
        history = await res.store.history(wanted)
        return None if history is None else history_response(history)

    history = run_on_deployment(work)
    if history is None:
        fail(f"event {event_id} is not in the history", EXIT_FAILURE)
    if as_json:
        _print_json(history.model_dump(mode="json"))
    else:
        _print_history(history)


def _uuid(event_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(event_id)
    except ValueError:
        fail(f"{event_id!r} is not an event id (see `rebalancer events list`)", EXIT_CONFIG)


def history(
    account_id: Annotated[str, typer.Argument(help="an account's id")],
    limit: Annotated[int, typer.Option(min=1, max=200, help="how many runs, newest first")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """An account's runs, newest first, each with the orders it placed and their fills."""

    async def work(res: Resources) -> list[RunDetail]:
        runs = []
        for run in await res.store.account_runs(account_id, limit):
            found = await res.store.run(run.run_id)
            runs.append(run_detail(run, found.orders if found else ()))
        return runs

    runs = run_on_deployment(work)
    if as_json:
        _print_json([run.model_dump(mode="json") for run in runs])
        return
    if not runs:
        typer.echo(f"account {account_id} has no runs in the history")
    for run in runs:
        said = f"{run.exec_command} {_when(run.started_at)} {run.message or run.error or ''}"
        _print_run(run.run_id, run.status, run.execution_mode, said, run.orders)
