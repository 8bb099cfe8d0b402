"""The rebalance planner: a pure function from targets, positions, prices and cash to orders.

`plan_rebalance(PlanInput) -> Plan`; see DESIGN.md section 5 for the rules it keeps.
"""

from event_processor.planner.errors import PlanError
from event_processor.planner.models import (
    EquityInfo,
    Holding,
    Plan,
    PlanInput,
    PlanMetrics,
    PlannedOrder,
    SkippedTrade,
    WithheldOrder,
)
from event_processor.planner.planner import plan_rebalance

__all__ = [
    "EquityInfo",
    "Holding",
    "Plan",
    "PlanError",
    "PlanInput",
    "PlanMetrics",
    "PlannedOrder",
    "SkippedTrade",
    "WithheldOrder",
    "plan_rebalance",
]
