"""GET /orders: the orders every run placed, filtered, newest first, a page at a time."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from management_service.api.deps import StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.api.paging import PagingDep, TimeRangeDep
from management_service.models import NO_NUL_PATTERN, ListedOrderResponse, OrderPage
from rebalancer_shared.events import ACCOUNT_ID_PATTERN
from rebalancer_shared.store import ListedOrder, OrderFilter, PageKey

router = APIRouter(prefix="/orders", tags=["history"])


def _listed(row: ListedOrder) -> ListedOrderResponse:
    return ListedOrderResponse.model_validate({**dataclasses.asdict(row.order), "account_id": row.account_id})


@router.get("", response_model=OrderPage, summary="The history's orders", responses=PG_UNAVAILABLE)
async def list_orders(
    store: StoreDep,
    placed: TimeRangeDep,
    paging: PagingDep,
    account_id: Annotated[str | None, Query(max_length=64, pattern=ACCOUNT_ID_PATTERN)] = None,
    event_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    symbol: Annotated[str | None, Query(min_length=1, max_length=32, pattern=NO_NUL_PATTERN)] = None,
    status: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            pattern=NO_NUL_PATTERN,  # PostgreSQL text cannot hold NUL: refused with 422, not a 500
            description="The broker's word: Filled, Cancelled...",
        ),
    ] = None,
) -> OrderPage:
    """Orders newest first (by the time their intent was recorded, `since`/`until`), filtered by
    account, event, run, symbol and status; `next_cursor` leads to the next (older) page."""
    where = OrderFilter(account_id, event_id, run_id, symbol, status, placed)
    found = await store.list_orders(where, paging.limit + 1, paging.after(int))
    page, next_cursor = paging.cut(found, lambda row: PageKey(row.order.created_at, row.row_id))
    return OrderPage(orders=[_listed(row) for row in page], next_cursor=next_cursor)
