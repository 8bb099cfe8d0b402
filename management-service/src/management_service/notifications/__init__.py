"""Notifications through apprise, sent from the history, never in an event's way.

- `targets`: the configured apprise URLs, their `${VAR}` secrets expanded, and what each wants;
- `rules`: which outcomes a transition is, and whether a repeated failure is news (pure);
  `messages`: the text of each message (pure);
- `intake`: new transitions in PostgreSQL -> pending messages, one per (transition, target);
  `runs`: the run a completion reports;
- `health_watch`: a service unhealthy for longer than the threshold, and healthy again -> messages;
- `daily`: once a day, the summary of the day that ended (`daily_facts`: its tallies from the history);
- `rows`: the `notifications` table; `rate_limit`: a token bucket per target;
  `sender`: per target, claim what its rate allows, deliver, retry, give up by age;
- `notifier`: the background tasks of the management service: intake and health in one loop, and
  one sender per target beside it.
"""

from management_service.notifications.notifier import Notifier
from management_service.notifications.targets import Target, resolve_targets

__all__ = ["Notifier", "Target", "resolve_targets"]
