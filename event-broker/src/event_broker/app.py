"""`python -m event_broker`: load the configuration and accounts, run the broker, map failures to exit codes.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT); 2 when the configuration or accounts.yaml is
invalid (nothing was started); 3 when the Ably connection failed for good, e.g. a rejected key
(40101); 1 for anything unexpected. Each non-zero exit prints one line on stderr that says why.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping

import structlog
from redis.asyncio import Redis

from event_broker.errors import AblyConnectionFailedError
from event_broker.service import BrokerService
from event_broker.settings import SERVICE_NAME, BrokerSettings
from event_broker.subscriber import AblySubscriber
from rebalancer_shared.accounts import Account, AccountsFileError, load_accounts
from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import configure_logging, register_settings_secrets
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_ABLY_FAILED = 3

log = structlog.get_logger(__name__)


def _fail(message: str, code: int) -> int:
    log.error(message, exit_code=code)
    print(f"{SERVICE_NAME}: {message}", file=sys.stderr, flush=True)
    return code


def _quiet_sdk_logs(level: str) -> None:
    # Our own lines report every connection and channel change; the SDK's INFO lines repeat them.
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("ably").setLevel(logging.WARNING)


async def run_broker(settings: Settings, broker: BrokerSettings, accounts: Mapping[str, Account]) -> None:
    """Open Redis and PostgreSQL, run the service until a signal stops it, and close everything."""
    redis = Redis.from_url(settings.redis.url)
    store = EventStore.from_url(settings.database.url)
    subscriber = AblySubscriber(
        broker.api_key,
        broker.client_options,
        rewind=broker.rewind,
        attach_timeout_seconds=broker.attach_timeout_seconds,
        close_timeout_seconds=broker.close_timeout_seconds,
    )
    queue = EventQueue(redis, settings.redis.key_prefix, lease_seconds=settings.processing.lease_seconds)
    service = BrokerService(broker, accounts, queue, store, subscriber)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.request_stop)
    try:
        await service.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await store.close()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run the broker; return the process exit code."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}", EXIT_CONFIG)
    configure_logging(settings.logging.level, settings.logging.format)
    _quiet_sdk_logs(settings.logging.level)
    register_settings_secrets(settings)
    try:
        broker = BrokerSettings.from_settings(settings)
        accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    except AccountsFileError as exc:
        return _fail(f"invalid accounts file: {exc}", EXIT_CONFIG)
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}", EXIT_CONFIG)
    try:
        asyncio.run(run_broker(settings, broker, accounts))
    except AblyConnectionFailedError as exc:
        return _fail(str(exc), EXIT_ABLY_FAILED)
    except Exception as exc:
        log.exception("event broker crashed")
        return _fail(f"stopped by an unexpected error: {type(exc).__name__}: {exc}", EXIT_UNEXPECTED)
    return EXIT_OK
