"""The event-processor process: wires settings, Redis, PostgreSQL, the broker and the allocation API
into a `Worker`, and stops it gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog

from event_processor.allocations import AllocationClient
from event_processor.brokers import Broker, IbkrBroker
from event_processor.brokers.simulated_file import simulated_broker_from_file
from event_processor.retry_policy import RetryPolicy
from event_processor.runner import EventRunner
from event_processor.worker import Worker
from rebalancer_shared.accounts import Account, load_accounts, refuse_fractional_shares
from rebalancer_shared.config import Settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.recovery import reconcile_queue
from rebalancer_shared.resources import open_resources
from rebalancer_shared.startup import wait_for_servers

log = structlog.get_logger(__name__)
SERVICE_NAME = "event-processor"


def make_broker(settings: Settings, accounts: Mapping[str, Account]) -> Broker:
    """`BROKER=ibkr` (default): IB Gateway through ib_async; `simulated`: an in-memory account.

    The `ibkr` broker refuses accounts that trade fractional shares (`AccountsFileError`): IB does not
    take fractional-sized orders through its API, so the processor does not start with them.
    """
    if settings.processing.broker == "simulated":
        if settings.processing.simulated_broker_file is None:
            raise ConfigError(
                "BROKER=simulated needs SIMULATED_BROKER_FILE (processing.simulated_broker_file)"
            )
        return simulated_broker_from_file(settings.processing.simulated_broker_file, accounts)
    refuse_fractional_shares(accounts, settings.accounts_file)
    if settings.ibkr.trading_mode == "live":
        log.warning("TRADING_MODE=live: orders will trade real money", host=settings.ibkr.host)
    return IbkrBroker(settings.ibkr, settings.orders, account_ids=list(accounts))


async def _retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy, its market calendar loaded once now (a second or two) rather than in a run."""
    policy = RetryPolicy.from_settings(settings.processing, settings.orders)
    now = datetime.now(UTC)
    market = await asyncio.to_thread(policy.calendar.describe, now)
    log.info("market calendar", calendar=settings.processing.market_calendar, now=market)
    return policy


async def run_processor(settings: Settings) -> None:
    """Check the accounts, wait for Redis and PostgreSQL (start-up policy: rebalancer_shared.startup),
    reconcile the queue with the history, then run until SIGTERM/SIGINT and drain (see `Worker.run`)."""
    accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    broker = make_broker(settings, accounts)
    await wait_for_servers(settings)
    allocations = AllocationClient(settings.allocations)
    pool = settings.processing.max_concurrent_events + 2
    try:
        async with open_resources(settings, accounts=accounts, store_pool_size=pool) as res:
            await reconcile_queue(res.lifecycle, settings.processing.lease_seconds)
            policy = await _retry_policy(settings)
            runner = EventRunner(
                accounts,
                broker,
                allocations,
                res.store,
                res.queue,
                settings.processing,
                settings.orders,
                policy=policy,
            )
            gateway = broker.gateway if isinstance(broker, IbkrBroker) else None
            worker = Worker(res.lifecycle, runner, settings.processing, policy=policy, gateway=gateway)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.stop)
            log.info(
                "event processor started",
                worker=worker.name,
                broker=settings.processing.broker,
                accounts=len(accounts),
                max_concurrent_events=settings.processing.max_concurrent_events,
            )
            await worker.run()
    finally:
        await broker.close()
        await allocations.aclose()
