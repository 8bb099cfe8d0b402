"""Brokers: the `Broker` protocol, the ib_async implementation and the in-memory simulation.

`ReadOnlyBroker` reads an account; `Broker` also cancels, places and waits. Dry runs get a
`ReadOnlyBrokerView`, which has no write method at all.
"""

from event_processor.brokers.ibkr import IbkrBroker
from event_processor.brokers.models import (
    AccountValues,
    BrokerError,
    BrokerExecution,
    BrokerPosition,
    Listing,
    OpenOrder,
    OrderRequest,
    OrderResult,
)
from event_processor.brokers.protocol import Broker, ReadOnlyBroker, ReadOnlyBrokerView
from event_processor.brokers.simulated import SimulatedBroker

__all__ = [
    "AccountValues",
    "Broker",
    "BrokerError",
    "BrokerExecution",
    "BrokerPosition",
    "IbkrBroker",
    "Listing",
    "OpenOrder",
    "OrderRequest",
    "OrderResult",
    "ReadOnlyBroker",
    "ReadOnlyBrokerView",
    "SimulatedBroker",
]
