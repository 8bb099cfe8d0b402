"""The history written from the outbox, and orders recorded as they are placed.

- `event_transitions.seq`: the outbox entry a transition came from (Redis stream id as one number),
  unique, so writing an entry twice (the lifecycle at once, a drainer later) stores it once.
- `events.history_seq`: the newest entry applied to the row; an older entry written late (a drainer
  behind the lifecycle) never moves the row back.
- `orders.seq`: the order's place in its run; (run_id, seq) is unique, so the intent written before
  `placeOrder`, the broker's ids after it and the fills later all land on one row.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_transitions", sa.Column("seq", sa.BigInteger()))
    op.create_index("ux_event_transitions_seq", "event_transitions", ["seq"], unique=True)
    op.add_column("events", sa.Column("history_seq", sa.BigInteger()))
    op.add_column("orders", sa.Column("seq", sa.Integer()))
    op.create_index("ux_orders_run_seq", "orders", ["run_id", "seq"], unique=True)
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", "runs")
    op.drop_index("ux_orders_run_seq", "orders")
    op.drop_column("orders", "seq")
    op.drop_column("events", "history_seq")
    op.drop_index("ux_event_transitions_seq", "event_transitions")
    op.drop_column("event_transitions", "seq")
