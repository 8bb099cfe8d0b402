"""The broker's last word on each order: `orders.message`.

IB's rejection (error 201 with its reason, 10243 for a fractional size, ...) or other error on an
order, as "IB error <code>: <IB's text>"; NULL when the broker said nothing beyond the status.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("message", sa.Text()))


def downgrade() -> None:
    op.drop_column("orders", "message")
