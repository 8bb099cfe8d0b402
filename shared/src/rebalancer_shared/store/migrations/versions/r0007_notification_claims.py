"""Notifications: who holds a claim, what a failure message reported, and a lookup by event.

- `notifications.claimed_by`: the token of the claim that may change a pending row. A sender whose
  lease ran out (a receiver that hung) and whose row another replica claimed again can no longer
  mark it: only the holder's writes count.
- `notifications.failure_class` and `occurred_at`: of the transition a `failed` message reported,
  so a failure repeated every 30 s is sent once, then at most once an hour (or when its class
  changes), by looking at the event's last `failed` message (`ix_notifications_event`).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("claimed_by", sa.String(32)))
    op.add_column("notifications", sa.Column("failure_class", sa.String(16)))
    op.add_column("notifications", sa.Column("occurred_at", sa.DateTime(timezone=True)))
    op.create_index("ix_notifications_event", "notifications", ["event_id", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_event", "notifications")
    op.drop_column("notifications", "occurred_at")
    op.drop_column("notifications", "failure_class")
    op.drop_column("notifications", "claimed_by")
