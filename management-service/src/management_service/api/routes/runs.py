"""GET /runs/{run_id}: one run with its plan, result, error and orders."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from management_service.api.deps import StoreDep
from management_service.api.errors import PG_UNAVAILABLE
from management_service.history import run_detail
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
    return run_detail(found.run, found.orders)
