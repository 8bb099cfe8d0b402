"""GET /accounts: the configured accounts, the channel each follows, its settings and last run;
GET /accounts/{account_id}: one of them with its runs, its newest plan's weights and its drift."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status

from management_service.account_view import account_state
from management_service.api.deps import AccountsDep, StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.api.paging import PagingDep
from management_service.history import run_response
from management_service.models import AccountDetail, AccountResponse, ErrorResponse, LastRun
from rebalancer_shared.store import PageKey

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get("", response_model=list[AccountResponse], responses=PG_UNAVAILABLE, summary="Configured accounts")
async def list_accounts(accounts: AccountsDep, store: StoreDep) -> list[AccountResponse]:
    """Accounts in the order of the accounts file; `last_run` is null for an account that never ran."""
    last_runs = await store.last_run_status(list(accounts))
    return [
        AccountResponse(
            account_id=account.account_id,
            channel=account.channel,
            settings=account.settings,
            last_run=LastRun.model_validate(last_runs[account_id]) if account_id in last_runs else None,
        )
        for account_id, account in accounts.items()
    ]


@router.get(
    "/{account_id}",
    response_model=AccountDetail,
    summary="An account and its runs",
    responses={
        404: {"model": ErrorResponse, "description": "No such account is configured."},
        **PG_UNAVAILABLE,
    },
)
async def get_account(
    account_id: str, accounts: AccountsDep, store: StoreDep, paging: PagingDep
) -> AccountDetail:
    """The account's settings, its runs newest first (`limit`, `cursor` page through them), the newest
    plan's weights before/after against its targets, and its drift now when the history holds a
    snapshot of its holdings younger than 24 hours."""
    account = accounts.get(account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"account {account_id!r} is not configured")
    found = await store.account_runs(account_id, paging.limit + 1, paging.after(uuid.UUID))
    page, runs_cursor = paging.cut(found, lambda run: PageKey(run.started_at, run.run_id))
    state = await account_state(store, account_id, datetime.now(UTC))
    return AccountDetail(
        account_id=account_id,
        channel=account.channel,
        settings=account.settings,
        last_run=LastRun.model_validate(state.last_run) if state.last_run else None,
        runs=[run_response(run, ()) for run in page],
        runs_cursor=runs_cursor,
        last_plan=state.last_plan,
        drift=state.drift,
    )
