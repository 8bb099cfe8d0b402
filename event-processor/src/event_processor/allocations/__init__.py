"""The allocation API: the strategy's target weights, validated before anything trades on them.

`validate_target_weights` (weights.py) is the one rule for target weights; `rebalancer plan` uses it
too, so a what-if scenario is refused exactly when, and with the words, the processor would refuse.
"""

from event_processor.allocations.client import AllocationClient
from event_processor.allocations.models import AllocationError, TargetAllocation, parse_allocation_response
from event_processor.allocations.weights import TargetWeightsError, validate_target_weights

__all__ = [
    "AllocationClient",
    "AllocationError",
    "TargetAllocation",
    "TargetWeightsError",
    "parse_allocation_response",
    "validate_target_weights",
]
