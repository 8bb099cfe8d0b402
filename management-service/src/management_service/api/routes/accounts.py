"""GET /accounts: the configured accounts, the channel each follows, its settings and last run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from management_service.api.deps import AccountsDep, StoreDep
from management_service.models import AccountResponse, ErrorResponse, LastRun

router = APIRouter(prefix="/accounts", tags=["accounts"])

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "PostgreSQL unavailable."}
}


@router.get("", response_model=list[AccountResponse], responses=_UNAVAILABLE, summary="Configured accounts")
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
