"""`python -m event_processor.healthcheck`: the container's health check (see rebalancer_shared.healthcheck).

Every service names its heartbeat `{hostname}:{pid}:{random}` (`rebalancer_shared.heartbeats.instance_name`).
"""

from __future__ import annotations

import sys

from rebalancer_shared.healthcheck import OwnHeartbeatCheck

CHECK = OwnHeartbeatCheck("event-processor")
MAX_AGE_SECONDS = CHECK.max_age_seconds
heartbeat_problem = CHECK.heartbeat_problem
main = CHECK.main

if __name__ == "__main__":
    sys.exit(main())
