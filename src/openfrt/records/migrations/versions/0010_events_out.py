"""Events out: webhook and MQTT destinations, the transactional outbox and per-destination
deliveries; and the ``monitoring`` role, which may read the server's metrics and nothing else.

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ROLES_BEFORE = ("operator", "engagement_officer", "authorising_officer", "auditor", "admin")
ROLES_AFTER = (*ROLES_BEFORE, "monitoring")


def _enum(name: str, length: int, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


def _allow_roles(roles: Sequence[str]) -> None:
    # The role column's CHECK constraint (named after its enum) lists the allowed roles.
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("user_role", type_="check")
        batch.create_check_constraint("user_role", sa.column("role").in_(roles))


def upgrade() -> None:
    _allow_roles(ROLES_AFTER)
    op.create_table(
        "event_destinations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", _enum("destination_kind", 16, "webhook", "mqtt"), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("sealed_secrets", sa.LargeBinary(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("include_media", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("deployment", sa.String(128)),
        sa.Column("occurred_at", WHEN, nullable=False, index=True),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_table(
        "event_deliveries",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", ID, sa.ForeignKey("outbox_events.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("destination_id", sa.Integer(), sa.ForeignKey("event_destinations.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),
        sa.Column("status", _enum("delivery_status", 16, "pending", "delivered", "dead"), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retrying_since", WHEN, nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False, index=True),
        sa.Column("claimed_until", WHEN),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_at", WHEN),
    )


def downgrade() -> None:
    op.drop_table("event_deliveries")
    op.drop_table("outbox_events")
    op.drop_table("event_destinations")
    monitoring = op.get_bind().scalar(sa.text("SELECT count(*) FROM users WHERE role = 'monitoring'"))
    if monitoring:  # users are never deleted (audit entries name them): an administrator decides
        raise RuntimeError(f"{monitoring} users have the monitoring role, which the older schema does not know; "
                           "change their role first")
    _allow_roles(ROLES_BEFORE)
