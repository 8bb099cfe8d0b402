"""`python -m management_service`: serve the API with uvicorn on MANAGEMENT_HOST:MANAGEMENT_PORT.

Before it listens it checks accounts.yaml and waits for Redis and PostgreSQL like every service
(rebalancer_shared.startup: exit codes 2 and 3, one line on stderr), so it never says "ready" while
it cannot work. Without MANAGEMENT_API_KEY it starts, and warns that every change will be refused;
listening beyond loopback with CONSOLE_HTTPS_ONLY off, it warns that the console's cookie may travel
in clear text.
A notification URL naming an environment variable that is not set stops it (exit code 2).
"""

from __future__ import annotations

import sys

import structlog
import uvicorn

from management_service.main import create_app
from management_service.notifications import resolve_targets
from management_service.ui.session import insecure_cookie_warning
from rebalancer_shared.accounts import load_accounts
from rebalancer_shared.config import Settings, environment
from rebalancer_shared.startup import start_service, wait_for_servers

SERVICE_NAME = "management-service"
log = structlog.get_logger("management_service")


async def serve(settings: Settings) -> None:
    """Check the accounts and the servers, then serve until SIGINT/SIGTERM."""
    accounts = load_accounts(settings.accounts_file, settings.rebalancing_defaults)
    targets = resolve_targets(settings, accounts, environment())  # a missing ${VAR}: exit code 2
    await wait_for_servers(settings)
    if settings.management.api_key is None:
        log.warning(
            "MANAGEMENT_API_KEY is not set: POST and DELETE answer 503 (nothing can be added or "
            "removed) until it is; reads work"
        )
    cookie_warning = insecure_cookie_warning(settings)
    if cookie_warning:
        log.warning(cookie_warning)
    host, port = settings.management.host, settings.management.port
    log.info("starting management service", host=host, port=port, notification_targets=len(targets))
    # log_config=None: uvicorn's loggers go through our redacting structlog chain.
    app = create_app(settings, targets=targets)  # resolved once, here
    config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False)
    await uvicorn.Server(config).serve()


def main() -> int:
    """Serve; return the process exit code."""
    return start_service(SERVICE_NAME, serve)


if __name__ == "__main__":
    sys.exit(main())
