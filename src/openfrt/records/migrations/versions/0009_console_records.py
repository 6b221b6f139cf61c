"""What the console shows officers: each alert's verdict history (corrections with their reason),
why a subject is on a watchlist, an officer's rank and number, and why a deployment's last start
failed (it went back to planned, unpublished).

Adjudicated alerts get their verdict in force as the first entry of their history.

Revision ID: 0009
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def _enum(name: str, length: int, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


def upgrade() -> None:
    op.create_table(
        "alert_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("status", _enum("verdict_status", 24, "pending", "confirmed_match", "false_alert", "no_further_action"),
                  nullable=False),
        sa.Column("outcome", _enum("verdict_outcome", 24, "no_action", "engaged", "words_of_advice", "arrested", "other"),
                  nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("correction_reason", sa.Text()),
        sa.Column("adjudicated_by", sa.String(200), nullable=False),
        sa.Column("adjudicated_at", WHEN, nullable=False),
    )
    op.execute(
        "INSERT INTO alert_verdicts (alert_id, status, outcome, engaged, note, adjudicated_by, adjudicated_at) "
        "SELECT id, status, outcome, engaged, note, adjudicated_by, adjudicated_at FROM alerts "
        "WHERE status <> 'pending' AND outcome IS NOT NULL AND adjudicated_by IS NOT NULL AND adjudicated_at IS NOT NULL "
        "ORDER BY id"
    )
    with op.batch_alter_table("watchlist_members") as batch:
        batch.add_column(sa.Column("reason", sa.Text()))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("rank", sa.String(60)))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("start_failure", sa.Text()))
        batch.add_column(sa.Column("start_failed_at", WHEN))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("start_failed_at")
        batch.drop_column("start_failure")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("rank")
    with op.batch_alter_table("watchlist_members") as batch:
        batch.drop_column("reason")
    op.drop_table("alert_verdicts")
