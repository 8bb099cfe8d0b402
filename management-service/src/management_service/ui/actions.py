"""The console's actions (POST, behind sign-in and the CSRF token): a dry run now, a live rebalance,
retry now, remove.

They call what the API calls: `submissions.submit_by_hand` (the account check, the live guard and the
atomic dedup) and the lifecycle's `retry_now` and `remove`. Events are added with source `api`: the
console is a client of the management service like curl.

A live rebalance needs two things typed or ticked on purpose: the account id typed again (so a
click on the wrong row trades nothing), and, while `ENFORCE_LIVE_GUARD` is on, the box that stands
for the API's `X-Allow-Live: true`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from management_service.api.deps import LifecycleDep, ServicesDep, SettingsDep
from management_service.submissions import ENQUEUE_MESSAGE, SubmissionRefused, submit_by_hand
from management_service.ui.guards import ConsoleRefusal, OperatorFormDep
from management_service.ui.rendering import done
from rebalancer_shared.events import Command, Event, EventSource
from rebalancer_shared.queue import EventNotQueuedError, EventProcessingError

router = APIRouter(prefix="/ui", include_in_schema=False)
REMOVED_DETAIL = "removed by an operator through the web console"
RETRY_DETAIL = "retry requested by an operator through the web console"


async def _submit(
    request: Request, services: ServicesDep, settings: SettingsDep, event: Event, allow_live: str
) -> Response:
    try:
        result = await submit_by_hand(
            services.lifecycle,
            services.accounts,
            event,
            allow_live=allow_live,
            enforce_live_guard=settings.management.enforce_live_guard,
        )
    except SubmissionRefused as exc:
        raise ConsoleRefusal(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{exc} (nothing was done)") from exc
    message = f"{event.exec_command.value} for {event.account_id}: {ENQUEUE_MESSAGE[result.outcome]}"
    return done(request, message, result.event_id)


def _event(account_id: str, command: Command) -> Event:
    # The payload a trigger with this `exec` carries, so the history reads like any other trigger's.
    return Event(
        account_id=account_id, exec_command=command, data={"exec": command.value}, source=EventSource.API
    )


@router.post("/actions/dry-run")
async def dry_run(
    request: Request, form: OperatorFormDep, services: ServicesDep, settings: SettingsDep
) -> Response:
    """A dry run (`print-rebalance`) of the account now: the plan, no orders."""
    event = _event(form.text("account_id"), Command.PRINT_REBALANCE)
    return await _submit(request, services, settings, event, allow_live="")


@router.post("/actions/rebalance")
async def live_rebalance(
    request: Request, form: OperatorFormDep, services: ServicesDep, settings: SettingsDep
) -> Response:
    """A live rebalance: the account id typed again, and the live guard's box while it is enforced."""
    account_id = form.text("account_id")
    if not account_id or form.text("confirm_account") != account_id:
        raise ConsoleRefusal(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"type the account id {account_id!r} to confirm a live rebalance (nothing was done)",
        )
    allow_live = "true" if form.text("allow_live") == "true" else ""
    if settings.management.enforce_live_guard and not allow_live:
        raise ConsoleRefusal(
            status.HTTP_403_FORBIDDEN,
            "a live rebalance places orders: tick 'place real orders' to confirm (nothing was done)",
        )
    return await _submit(request, services, settings, _event(account_id, Command.REBALANCE), allow_live)


@contextlib.contextmanager
def _queue_refusals() -> Iterator[None]:
    try:
        yield
    except EventNotQueuedError as exc:
        raise ConsoleRefusal(status.HTTP_404_NOT_FOUND, f"{exc} (nothing was done)") from exc
    except EventProcessingError as exc:
        raise ConsoleRefusal(status.HTTP_409_CONFLICT, f"{exc} (nothing was done)") from exc


@router.post("/events/{event_id}/retry")
async def retry_now(
    request: Request, event_id: uuid.UUID, _: OperatorFormDep, lifecycle: LifecycleDep
) -> Response:
    """A waiting event runs as soon as a worker is free (as `POST /queue/events/{id}/retry`)."""
    with _queue_refusals():
        outcome = await lifecycle.retry_now(str(event_id), RETRY_DETAIL)
    return done(request, f"retry now: {outcome.value}", str(event_id))


@router.post("/events/{event_id}/remove")
async def remove(
    request: Request, event_id: uuid.UUID, _: OperatorFormDep, lifecycle: LifecycleDep
) -> Response:
    """Remove a queued or waiting event (as `DELETE /queue/events/{id}`)."""
    with _queue_refusals():
        await lifecycle.remove(str(event_id), REMOVED_DETAIL)
    return done(request, "event removed", str(event_id))
