"""The console's pages (GET), each with a live part the page's script reloads every few seconds.

A page renders its live part inline, so it is complete without script; `/ui/parts/...` answers the
same part alone for the refresh. Reads follow PROTECT_READS (`guards.page_reader`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse

from management_service.api.deps import ServicesDep
from management_service.history import event_history
from management_service.services import Services
from management_service.ui import views
from management_service.ui.guards import ConsoleRefusal, PageReaderDep, PartReaderDep
from management_service.ui.rendering import render
from rebalancer_shared.events import Command
from rebalancer_shared.queue import EventState

router = APIRouter(prefix="/ui", include_in_schema=False)


async def _overview(services: Services) -> dict[str, Any]:
    return {"overview": await views.overview(services), "now": datetime.now(UTC)}


@router.get("", response_class=HTMLResponse)
async def overview_page(request: Request, services: ServicesDep, _: PageReaderDep) -> HTMLResponse:
    context = await _overview(services) | {"activity": await views.activity(services)}
    return render(request, "overview.html", context)


@router.get("/parts/overview", response_class=HTMLResponse)
async def overview_part(request: Request, services: ServicesDep, _: PartReaderDep) -> HTMLResponse:
    return render(request, "_overview.html", await _overview(services))


@router.get("/parts/activity", response_class=HTMLResponse)
async def activity_part(request: Request, services: ServicesDep, _: PartReaderDep) -> HTMLResponse:
    return render(request, "_activity.html", {"activity": await views.activity(services)})


def _queue_filter(
    state: Annotated[str, Query(max_length=32)] = "",
    account: Annotated[str, Query(max_length=64)] = "",
    command: Annotated[str, Query(max_length=32)] = "",
    q: Annotated[str, Query(max_length=64)] = "",
) -> views.QueueFilter:
    where = views.QueueFilter(state=state, account=account, command=command, search=q.strip())
    if where.problems():
        raise ConsoleRefusal(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(where.problems()))
    return where


QueueFilterDep = Annotated[views.QueueFilter, Depends(_queue_filter)]


async def _queue(services: Services, where: views.QueueFilter) -> dict[str, Any]:
    return {
        "listing": await views.live_events(services, where),
        "shown_at_most": views.LIVE_EVENTS_SHOWN,
        "where": where,
        "states": [s.value for s in EventState],
        "commands": [c.value for c in Command],
        "account_ids": list(services.accounts),
    }


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    services: ServicesDep,
    _: PageReaderDep,
    where: QueueFilterDep,
) -> HTMLResponse:
    return render(request, "queue.html", await _queue(services, where))


@router.get("/parts/queue", response_class=HTMLResponse)
async def queue_part(
    request: Request,
    services: ServicesDep,
    _: PartReaderDep,
    where: QueueFilterDep,
) -> HTMLResponse:
    return render(request, "_queue.html", await _queue(services, where))


async def _event(services: Services, event_id: str) -> dict[str, Any]:
    parsed = views.parse_event_id(event_id)
    history = await event_history(services.store, parsed) if parsed else None
    if history is None:
        raise ConsoleRefusal(status.HTTP_404_NOT_FOUND, f"no event has the id {event_id!r}")
    runs = [
        {
            "run": run,
            "plan": views.plan_view(run.plan),
            "buy_plan": views.buy_plan_view(run.result),
            "filled": views.filled_weights(run),
        }
        for run in history.runs
    ]
    return {"history": history, "runs": runs, "waiting": views.is_waiting(history.event.status)}


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(
    request: Request, event_id: str, services: ServicesDep, _: PageReaderDep
) -> HTMLResponse:
    return render(request, "event.html", await _event(services, event_id))


@router.get("/parts/events/{event_id}", response_class=HTMLResponse)
async def event_part(
    request: Request, event_id: str, services: ServicesDep, _: PartReaderDep
) -> HTMLResponse:
    return render(request, "_event.html", await _event(services, event_id))


@router.get("/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request, services: ServicesDep, _: PageReaderDep) -> HTMLResponse:
    return render(request, "accounts.html", {"accounts": await views.accounts(services)})


@router.get("/parts/accounts", response_class=HTMLResponse)
async def accounts_part(request: Request, services: ServicesDep, _: PartReaderDep) -> HTMLResponse:
    return render(request, "_accounts.html", {"accounts": await views.accounts(services)})


async def _account(services: Services, account_id: str) -> dict[str, Any]:
    found = await views.account(services, account_id)
    if found is None:
        raise ConsoleRefusal(status.HTTP_404_NOT_FOUND, f"account {account_id!r} is not configured")
    return {"view": found}


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
async def account_page(
    request: Request, account_id: str, services: ServicesDep, _: PageReaderDep
) -> HTMLResponse:
    return render(request, "account.html", await _account(services, account_id))


@router.get("/parts/accounts/{account_id}", response_class=HTMLResponse)
async def account_part(
    request: Request, account_id: str, services: ServicesDep, _: PartReaderDep
) -> HTMLResponse:
    return render(request, "_account.html", await _account(services, account_id))
