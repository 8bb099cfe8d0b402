"""`python -m event_broker`: load the configuration and accounts, run the event broker, map failures to
exit codes.

Exit codes (rebalancer_shared.startup): 0 after a clean stop (SIGTERM/SIGINT); 2 when the configuration
or accounts.yaml is invalid (nothing was started); 3 when Redis or PostgreSQL cannot be reached at
start (after STARTUP_WAIT_SECONDS), or the Ably connection failed for good, e.g. a rejected key
(40101); 1 for anything unexpected. Each non-zero exit prints one line on stderr that says why.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

import structlog

from event_broker.service import EventBrokerService
from event_broker.settings import SERVICE_NAME, EventBrokerSettings
from event_broker.subscriber import AblySubscriber
from rebalancer_shared.accounts import Account, load_accounts
from rebalancer_shared.config import Settings
from rebalancer_shared.resources import Resources, open_resources
from rebalancer_shared.startup import start_service, wait_for_servers

log = structlog.get_logger(__name__)


def _quiet_sdk_logs(level: str) -> None:
    # Our own lines report every connection and channel change; the SDK's INFO lines repeat them.
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("ably").setLevel(logging.WARNING)


async def run_event_broker(
    settings: Settings, own: EventBrokerSettings, accounts: Mapping[str, Account]
) -> None:
    """Open Redis and PostgreSQL, run the service until a signal stops it, and close everything."""
    async with open_resources(settings, accounts=accounts) as res:
        await _serve(own, res)


async def _serve(own: EventBrokerSettings, res: Resources) -> None:
    subscriber = AblySubscriber(
        own.api_key,
        own.client_options,
        rewind=own.rewind,
        attach_timeout_seconds=own.attach_timeout_seconds,
        close_timeout_seconds=own.close_timeout_seconds,
    )
    service = EventBrokerService(own, res.accounts, res.lifecycle, subscriber)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
    try:
        await service.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _start(settings: Settings) -> None:
    _quiet_sdk_logs(settings.logging.level)
    own = EventBrokerSettings.from_settings(settings)
    accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    await wait_for_servers(settings)
    await run_event_broker(settings, own, accounts)


def main(argv: list[str] | None = None) -> int:
    """Run the event broker; return the process exit code."""
    return start_service(SERVICE_NAME, _start)
