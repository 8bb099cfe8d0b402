"""GET /accounts: the configured accounts, the channel each follows, its settings and last run."""

from __future__ import annotations

from fastapi import APIRouter

from management_service.api.deps import AccountsDep, StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.models import AccountResponse, LastRun

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
