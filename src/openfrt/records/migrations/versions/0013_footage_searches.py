"""Footage searches and their leads (retrospective search of hours of footage).

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "footage_searches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("case_ref", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("top", sa.Integer(), nullable=False),
        sa.Column("status", sa.Enum("running", "done", "failed", name="footage_search_status", native_enum=False,
                                    create_constraint=True, length=16), nullable=False, index=True),
        sa.Column("started_at", WHEN, nullable=False, index=True),
        sa.Column("finished_at", WHEN),
        sa.Column("summary", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("held_by", sa.String(200)),
        sa.Column("held_at", WHEN),
        sa.Column("hold_reason", sa.Text()),
        sa.Column("leads_deleted_at", WHEN),
        sa.Column("runner", sa.String(200)),
    )
    op.create_table(
        "footage_leads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.Integer(), sa.ForeignKey("footage_searches.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("probe_crop", sa.LargeBinary(), nullable=False),
        sa.Column("frame", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("footage_leads")
    op.drop_table("footage_searches")
