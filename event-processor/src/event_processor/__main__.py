"""`python -m event_processor`: run the event processor until SIGTERM (exit codes: see startup)."""

from __future__ import annotations

import sys

from event_processor.service import SERVICE_NAME, run_processor
from rebalancer_shared.startup import start_service


def main() -> int:
    return start_service(SERVICE_NAME, run_processor)


if __name__ == "__main__":
    sys.exit(main())
