"""The History page (`/ui/history`): every event PostgreSQL keeps, finished ones included, newest
first, filtered by account, command, state and source, a page at a time.

It reads what `GET /events` reads, the same way: `EventStore.list_events` with an `EventFilter`,
paged by the API's `Paging` (keyset cursors of `management_service.cursors`), so a cursor means the
same thing in both and a bad one is refused with the same words.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse

from management_service.api.deps import ServicesDep
from management_service.api.paging import Paging
from management_service.ui.guards import ConsoleRefusal, PageReaderDep
from management_service.ui.rendering import render
from management_service.ui.views import unknown_choice
from rebalancer_shared.events import ACCOUNT_ID_PATTERN, Command, EventSource
from rebalancer_shared.store import EventFilter, EventStatus, PageKey

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_ROWS = 50
STATES = [s.value for s in EventStatus]
COMMANDS = [c.value for c in Command]
SOURCES = [s.value for s in EventSource]


@dataclass(frozen=True)
class HistoryFilter:
    """The page's filters; an empty field matches everything."""

    account: str = ""
    command: str = ""
    state: str = ""
    source: str = ""

    def problems(self) -> list[str]:
        found = (
            _not_an_account_id(self.account),
            unknown_choice("command", self.command, COMMANDS),
            unknown_choice("state", self.state, STATES),
            unknown_choice("source", self.source, SOURCES),
        )
        return [p for p in found if p]

    def event_filter(self) -> EventFilter:
        return EventFilter(
            account_id=self.account or None,
            exec_command=self.command or None,
            status=self.state or None,
            source=self.source or None,
        )

    def query(self, cursor: str | None = None) -> str:
        """The filters (and a cursor) as a query string."""
        pairs = {
            "account": self.account,
            "command": self.command,
            "state": self.state,
            "source": self.source,
            "cursor": cursor or "",
        }
        return urlencode({k: v for k, v in pairs.items() if v})


def _not_an_account_id(value: str) -> str | None:
    # Checked as the API checks it: an account id is letters, digits, '_', '.' and '-' (a NUL in it
    # would reach PostgreSQL, whose text cannot hold one).
    if not value or re.fullmatch(ACCOUNT_ID_PATTERN, value):
        return None
    return f"account {value!r} is not an account id (letters, digits, '_', '.' and '-' only)"


def _history_filter(
    account: Annotated[str, Query(max_length=64)] = "",
    command: Annotated[str, Query(max_length=32)] = "",
    state: Annotated[str, Query(max_length=32)] = "",
    source: Annotated[str, Query(max_length=32)] = "",
) -> HistoryFilter:
    where = HistoryFilter(account.strip(), command, state, source)
    if where.problems():
        raise ConsoleRefusal(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(where.problems()))
    return where


HistoryFilterDep = Annotated[HistoryFilter, Depends(_history_filter)]


@router.get("/history", response_class=HTMLResponse)
async def history_page(
    request: Request,
    services: ServicesDep,
    _: PageReaderDep,
    where: HistoryFilterDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """One page of the history, newest first; `cursor` (from the page before) leads to older ones."""
    paging = Paging(PAGE_ROWS, cursor or None)
    found = await services.store.list_events(where.event_filter(), PAGE_ROWS + 1, paging.after(uuid.UUID))
    rows, next_cursor = paging.cut(found, lambda e: PageKey(e.created_at, e.event_id))
    context = {
        "rows": rows,
        "where": where,
        "older": where.query(next_cursor) if next_cursor else None,
        "paged": paging.cursor is not None,
        "account_ids": list(services.accounts),
        "commands": COMMANDS,
        "states": STATES,
        "sources": SOURCES,
    }
    return render(request, "history.html", context)
