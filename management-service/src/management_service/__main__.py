"""`python -m management_service`: serve the API with uvicorn on MANAGEMENT_HOST:MANAGEMENT_PORT."""

from __future__ import annotations

import sys

import structlog
import uvicorn

from management_service.main import create_app
from rebalancer_shared.config import load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import configure_logging, register_settings_secrets

log = structlog.get_logger("management_service")


def main() -> int:
    """Load the settings, set up logging, and serve until SIGINT/SIGTERM."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        configure_logging()
        log.error("cannot start: configuration error", error=str(exc))
        return 2
    register_settings_secrets(settings)
    configure_logging(settings.logging.level, settings.logging.format)
    host, port = settings.management.host, settings.management.port
    log.info("starting management service", host=host, port=port)
    # log_config=None: uvicorn's loggers go through our redacting structlog chain.
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
