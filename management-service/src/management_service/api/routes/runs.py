"""GET /runs/{run_id}: one run with its plan, result, error and orders."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from management_service.api.deps import StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.history import run_response
from management_service.models import ErrorResponse, RunDetail

router = APIRouter(prefix="/runs", tags=["history"])


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    summary="A run",
    responses={404: {"model": ErrorResponse, "description": "No run has this id."}, **PG_UNAVAILABLE},
)
async def get_run(run_id: uuid.UUID, store: StoreDep) -> RunDetail:
    """The run's equity, plan, result and error, and the orders it placed (intent, ids, fills)."""
    found = await store.run(run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} is unknown")
    run = found.run
    return RunDetail(
        **run_response(run, found.orders).model_dump(),
        event_id=run.event_id,
        account_id=run.account_id,
        exec_command=run.exec_command.value,
    )
