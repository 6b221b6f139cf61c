"""Deployment leases: which process runs a running deployment, until when; and why a deployment
ended early (its process lost, its store failing), so its record can say it was interrupted.

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deployment_leases",
        sa.Column("deployment_id", sa.Integer(), sa.ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("server_id", sa.String(64)),
        sa.Column("watchlist_revision", sa.Integer(), nullable=False),
        sa.Column("acquired_at", WHEN, nullable=False),
        sa.Column("renewed_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
    )
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("end_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("end_reason")
    op.drop_table("deployment_leases")
