"""Notifications: the messages to send, and which transitions the notifier has not looked at yet.

- `notifications`: one row per message and target, unique by (`key`, `target`): `key` names what is
  notified (`transition:<seq>`, `health:<component>:down:<since>`, ...), so a transition is queued
  for a target once however often it is looked at. `status` pending | sent | failed, `attempts`,
  `next_attempt_at` (when a pending row may be claimed: its backoff, rate limit or claim lease).
- `event_transitions.notification_pending`: true for a transition the notifier has not looked at.
  Rows already in the history are false (they are not news); new rows default to true. A flag on the
  row rather than a watermark: transitions reach PostgreSQL out of order (a drain after a crash, two
  writers committing in another order than their ids), and a watermark would skip the late ones.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "event_transitions",
        sa.Column("notification_pending", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.alter_column("event_transitions", "notification_pending", server_default=sa.true())
    op.create_index(
        "ix_event_transitions_notification_pending",
        "event_transitions",
        ["id"],
        postgresql_where=sa.text("notification_pending"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64)),
        sa.Column("event_id", sa.Uuid()),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ux_notifications_key_target", "notifications", ["key", "target"], unique=True)
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_due", "notifications")
    op.drop_index("ux_notifications_key_target", "notifications")
    op.drop_table("notifications")
    op.drop_index("ix_event_transitions_notification_pending", "event_transitions")
    op.drop_column("event_transitions", "notification_pending")
