"""How every service starts and stops: one policy, one set of exit codes, one line when it cannot run.

Start-up policy, the same for the three services and for both servers: a service that cannot reach
Redis or PostgreSQL at start does not start half-way. It waits for them, logging a countdown at each
attempt, for `STARTUP_WAIT_SECONDS` (default 60; an orchestrator that restarts it may want less),
then exits with code 3 and one line naming the server (its URL without the password) and why. A
server that answers but refuses us (wrong password, no right to create the database) or a schema
this release cannot use is not waited for. Once a service runs, outages are survived (retries) and
reported by `/health`. PostgreSQL's schema is created or upgraded before the service says it started
(`store.schema.prepare_database`).

Exit codes (services and the `rebalancer` CLI): 0 done or stopped cleanly; 1 a failure of the work
itself or an unexpected error; 2 configuration (config.yaml, the environment, .env, accounts.yaml,
a schema that must be upgraded by hand); 3 a server cannot be used (Redis, PostgreSQL, Ably).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_fixed

from rebalancer_shared.accounts import AccountsFileError
from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import (
    ConfigError,
    SchemaError,
    ServerRefusedError,
    ServerUnavailableError,
)
from rebalancer_shared.logging import configure_logging, register_settings_secrets
from rebalancer_shared.redis_connection import check_redis
from rebalancer_shared.store.schema import SchemaReport, prepare_database_async

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130  # Ctrl-C before the service installed its own signal handlers
RETRY_EVERY_SECONDS = 2.0

log = structlog.get_logger(__name__)


def _worth_waiting(exc: BaseException) -> bool:
    return isinstance(exc, ServerUnavailableError) and not isinstance(exc, ServerRefusedError)


def _countdown(wait_seconds: float) -> Callable[[RetryCallState], None]:
    def announce(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        left = max(0.0, wait_seconds - (state.seconds_since_start or 0.0))
        log.warning(f"{error}; trying again, giving up in {left:.0f} s", gives_up_in_seconds=round(left))

    return announce


async def _ready(settings: Settings) -> SchemaReport:
    await check_redis(settings.redis.url)
    return await prepare_database_async(settings.database.url, migrate=settings.database.migrate_on_start)


async def wait_for_servers(settings: Settings) -> SchemaReport:
    """Reach Redis and PostgreSQL and ready the schema, waiting up to `startup.wait_seconds` for them."""
    wait_seconds = settings.startup.wait_seconds
    retrying = AsyncRetrying(
        stop=stop_after_delay(wait_seconds),
        wait=wait_fixed(RETRY_EVERY_SECONDS),
        retry=retry_if_exception(_worth_waiting),
        before_sleep=_countdown(wait_seconds),
        reraise=True,
    )
    report: SchemaReport | None = None
    async for attempt in retrying:
        with attempt:
            report = await _ready(settings)
    assert report is not None
    _log_schema(report)
    return report


def _log_schema(report: SchemaReport) -> None:
    if report.created_database:
        log.warning("created the database (it did not exist)", database=report.database)
    if report.adopted_legacy_schema:
        log.warning("adopted a schema made by the first release's init.sql as revision 0001")
    if report.upgraded:
        log.warning(
            "upgraded the database schema", database=report.database, before=report.before, after=report.after
        )


def failure_of(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and one-line message of a known failure, or None for an unexpected one."""
    if isinstance(exc, ServerUnavailableError):
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, AccountsFileError):
        return EXIT_CONFIG, f"invalid accounts file: {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, f"invalid configuration: {exc}"
    if isinstance(exc, SchemaError):
        return EXIT_CONFIG, str(exc)
    return None


def fail(service: str, code: int, message: str) -> int:
    """Say why on stderr in one line (and in the log), and return the exit code."""
    log.error(message, exit_code=code)
    print(f"{service}: {message}", file=sys.stderr, flush=True)
    return code


class StopRequested(Exception):
    """SIGTERM arrived before the service installed its own graceful handler."""


def _stop_early(signum: int, frame: object) -> None:
    raise StopRequested


def run_service(service: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run `main` until it returns; map a known failure to its exit code and one line on stderr.

    Until `main` installs its own handlers, SIGTERM stops the start-up cleanly (exit 0).
    """
    signal.signal(signal.SIGTERM, _stop_early)
    try:
        asyncio.run(main())
    except StopRequested:
        log.info(f"{service} stopped before it had started (SIGTERM)")
        return EXIT_OK
    except KeyboardInterrupt:
        return fail(service, EXIT_INTERRUPTED, "interrupted before it had started")
    except Exception as exc:
        known = failure_of(exc)
        if known is None:
            log.exception(f"{service} stopped by an unexpected error")
            return fail(service, EXIT_FAILURE, f"stopped by an unexpected error: {type(exc).__name__}: {exc}")
        return fail(service, *known)
    return EXIT_OK


def start_service(service: str, main: Callable[[Settings], Coroutine[Any, Any, None]]) -> int:
    """A service's `main()`: load the settings, set up logging, run `main(settings)`; return the exit code."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{service}: invalid configuration: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    configure_logging(settings.logging.level, settings.logging.format)
    register_settings_secrets(settings)
    return run_service(service, lambda: main(settings))
