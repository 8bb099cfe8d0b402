"""The allocation API: the strategy's target weights, validated before anything trades on them."""

from event_processor.allocations.client import AllocationClient
from event_processor.allocations.models import AllocationError, TargetAllocation, parse_allocation_response

__all__ = ["AllocationClient", "AllocationError", "TargetAllocation", "parse_allocation_response"]
