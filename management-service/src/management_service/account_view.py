"""An account's state read from its recent runs: its last run, its newest plan's weights and its
drift now. One reading for `GET /accounts/{id}` and the console's account pages, so both always
agree (the rules are `weights.last_plan` and `weights.drift_now`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from management_service.models import Drift, PlanWeights
from management_service.weights import drift_now, last_plan
from rebalancer_shared.store import EventStore, RunView

# The newest plan is looked for among this many runs (read-only commands between plans store none).
RUNS_SEARCHED_FOR_A_PLAN = 50


@dataclass(frozen=True)
class AccountState:
    """The newest run, the newest plan's weights, and the drift of the newest snapshot (< 24 h)."""

    last_run: RunView | None
    last_plan: PlanWeights | None
    drift: Drift | None


async def account_state(store: EventStore, account_id: str, now: datetime) -> AccountState:
    """Read the account's recent runs (newest first) once and judge them."""
    recent = await store.account_runs(account_id, RUNS_SEARCHED_FOR_A_PLAN)
    return AccountState(
        last_run=recent[0] if recent else None,
        last_plan=last_plan(recent),
        drift=drift_now(recent, now),
    )
