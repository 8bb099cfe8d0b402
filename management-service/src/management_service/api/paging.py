"""The query parameters every history listing shares: a time range, a page size and a cursor."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query

from management_service.api.errors import invalid_input
from management_service.cursors import BadCursor, cursor_after, page_key
from management_service.models import IsoTime
from rebalancer_shared.store import PageKey, TimeRange

MAX_PAGE = 500
_Row = TypeVar("_Row")


_SINCE = "At or after this time (ISO 8601, with zone)."
_UNTIL = "Before this time (ISO 8601, with zone)."


def time_range(
    since: Annotated[IsoTime | None, Query(description=_SINCE)] = None,
    until: Annotated[IsoTime | None, Query(description=_UNTIL)] = None,
) -> TimeRange:
    return TimeRange(since, until)


@dataclass(frozen=True)
class Paging:
    """A page request: how many rows, and the cursor of the page before (None: the newest page)."""

    limit: int
    cursor: str | None

    def after(self, key_type: Callable[[str], uuid.UUID | int]) -> PageKey | None:
        """Where the page starts; a cursor the API did not give out is a 422 naming `cursor`."""
        if self.cursor is None:
            return None
        try:
            return page_key(self.cursor, key_type)
        except BadCursor as exc:
            raise invalid_input(("query", "cursor"), "bad_cursor", str(exc), self.cursor) from exc

    def cut(
        self, found: Sequence[_Row], place: Callable[[_Row], PageKey]
    ) -> tuple[Sequence[_Row], str | None]:
        """The page (`found` was asked for `limit + 1` rows) and the cursor of the next, if any."""
        page = found[: self.limit]
        if len(found) <= self.limit:
            return page, None
        last = place(page[-1])
        return page, cursor_after(last.at, last.key)


def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before.")] = None,
) -> Paging:
    return Paging(limit, cursor)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]
PagingDep = Annotated[Paging, Depends(paging)]
