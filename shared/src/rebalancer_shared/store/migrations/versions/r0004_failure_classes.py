"""Failure classes: why a waiting event waits, and until when.

`events.failure_class` (transient, market_closed, needs_attention: the class of its last failure or
deferral) and `events.next_attempt_at` (while it waits: when it runs again); the same two on each
transition into a waiting state (`event_transitions.failure_class`, `due_at`). The events' status
gains the values `scheduled` and `needs_attention` (a text column: no change needed).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("failure_class", sa.String(16)))
    op.add_column("events", sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
    op.add_column("event_transitions", sa.Column("failure_class", sa.String(16)))
    op.add_column("event_transitions", sa.Column("due_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("event_transitions", "due_at")
    op.drop_column("event_transitions", "failure_class")
    op.drop_column("events", "next_attempt_at")
    op.drop_column("events", "failure_class")
