"""Notifications through apprise, sent from the history, never in an event's way.

- `targets`: the configured apprise URLs, their `${VAR}` secrets expanded, and what each wants;
- `rules`: which outcomes a transition is (pure); `messages`: the text of each message (pure);
- `intake`: new transitions in PostgreSQL -> pending messages, one per (transition, target);
- `health_watch`: a service unhealthy for longer than the threshold, and healthy again -> messages;
- `rate_limit`: a token bucket per target; `sender`: claim due messages, deliver, retry, give up;
- `notifier`: the background task of the management service that runs the three in turn.
"""

from management_service.notifications.notifier import Notifier
from management_service.notifications.targets import Target, resolve_targets

__all__ = ["Notifier", "Target", "resolve_targets"]
