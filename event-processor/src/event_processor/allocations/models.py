"""The allocation API's response (the product brief's format) and its validation.

Anything but a clean answer is an `AllocationError` naming what is wrong, because trading on a
half-read allocation is worse than not trading: the event retries with nothing traded. The shape
(status, data, symbols) is the pydantic model `AllocationAnswer`, whose first complaint is told in
the words below; the weights themselves are judged right after by `validate_target_weights`, the
rule `rebalancer plan` applies too, whose message is passed on word for word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from event_processor.allocations.weights import TargetWeightsError, validate_target_weights
from rebalancer_shared.errors import RebalancerError

# The error type of the complaints written here; pydantic's own ones are put in our words by loc.
_OWN_ERROR = "allocation_answer"


class AllocationError(RebalancerError):
    """The allocation API could not be reached or answered something we must not trade on."""


@dataclass(frozen=True)
class TargetAllocation:
    """A strategy's validated target weights and what the API said about the strategy."""

    channel: str
    weights: dict[str, float]
    name: str | None = None
    long_name: str | None = None
    last_rebalance_on: str | None = None
    as_of: str | None = None


def _refused(message: str) -> PydanticCustomError:
    return PydanticCustomError(_OWN_ERROR, "{message}", {"message": message})


def _as_text(value: object) -> object:
    return None if value is None else str(value)


# What the API says about the strategy is shown, never computed with: any value is kept as text.
_Text = Annotated[str | None, BeforeValidator(_as_text)]
_Symbol = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]


class AllocationEntry(BaseModel):
    """One item of `data.allocations`: a symbol and its weight as sent (judged by the weights rule)."""

    model_config = ConfigDict(frozen=True)

    symbol: _Symbol
    allocation: object = None


class AllocationData(BaseModel):
    """The `data` object: the entries, unique by symbol, and the strategy's description."""

    model_config = ConfigDict(frozen=True)

    allocations: Annotated[list[AllocationEntry], Field(min_length=1, strict=True)]
    name: _Text = None
    strategy_long_name: _Text = None
    last_rebalance_on: _Text = None
    as_of: _Text = None

    @field_validator("allocations")
    @classmethod
    def _unique_symbols(cls, entries: list[AllocationEntry]) -> list[AllocationEntry]:
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            if entry.symbol in seen:
                raise _refused(f"data.allocations[{index}]: duplicate symbol {entry.symbol!r}")
            seen.add(entry.symbol)
        return entries

    def raw_weights(self) -> dict[str, object]:
        """{symbol: the allocation as sent}; the numbers are judged by `validate_target_weights`."""
        return {entry.symbol: entry.allocation for entry in self.allocations}


class AllocationAnswer(BaseModel):
    """The whole response body: `status` must be "success", `data` holds the allocations."""

    model_config = ConfigDict(frozen=True)

    status: object = Field(default=None, validate_default=True)
    data: AllocationData

    @field_validator("status")
    @classmethod
    def _succeeded(cls, status: object) -> object:
        if status != "success":
            raise _refused(f"response status is {status!r}, not 'success'")
        return status


def _problem(error: ErrorDetails) -> str:
    """The first thing wrong with the body, in the words the processor has always used."""
    if error["type"] == _OWN_ERROR:
        return error["msg"]
    match error["loc"]:
        case ():
            return f"response is not a JSON object but {type(error['input']).__name__}"
        case ("data",):
            return "response has no 'data' object"
        case ("data", "allocations"):
            return "data.allocations is missing, not a list, or empty"
        case ("data", "allocations", int(index)):
            return f"data.allocations[{index}] is not an object"
        case ("data", "allocations", int(index), "symbol"):
            return f"data.allocations[{index}].symbol is missing or empty"
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


def parse_allocation_response(channel: str, body: object, sum_tolerance: float) -> TargetAllocation:
    """Validate a decoded response body; return the weights or raise `AllocationError`."""
    try:
        answer = AllocationAnswer.model_validate(body)
    except ValidationError as exc:
        raise AllocationError(_problem(exc.errors()[0])) from exc
    data = answer.data
    try:
        weights = validate_target_weights(data.raw_weights(), sum_tolerance)
    except TargetWeightsError as exc:
        raise AllocationError(exc.message) from exc
    return TargetAllocation(
        channel=channel,
        weights=weights,
        name=data.name,
        long_name=data.strategy_long_name,
        last_rebalance_on=data.last_rebalance_on,
        as_of=data.as_of,
    )
