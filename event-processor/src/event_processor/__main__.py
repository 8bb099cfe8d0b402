"""`python -m event_processor`: run the event processor until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from event_processor.service import run_processor
from rebalancer_shared.config import load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import configure_logging, register_settings_secrets


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"event-processor: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level, settings.logging.format)
    register_settings_secrets(settings)
    try:
        asyncio.run(run_processor(settings))
    except ConfigError as exc:
        print(f"event-processor: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
