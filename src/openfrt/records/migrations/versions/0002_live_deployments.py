"""Live facial recognition: deployments, their cameras and gaps, alerts and encrypted alert media.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def _enum(name: str, length: int, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


def _deployment_id(*, primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "deployment_id", sa.Integer(), sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False, primary_key=primary_key, index=not primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("latitude", sa.Float()),
        sa.Column("longitude", sa.Float()),
        sa.Column("planned_start", WHEN),
        sa.Column("planned_end", WHEN),
        sa.Column("authorised_by", sa.String(200), nullable=False),
        sa.Column("watchlist", sa.String(128), nullable=False),
        sa.Column("threshold", sa.Float()),
        sa.Column("model_id", sa.String(100)),
        sa.Column("watchlist_size", sa.Integer()),
        sa.Column("status", _enum("deployment_status", 16, "planned", "running", "ended"), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN),
        sa.Column("ended_at", WHEN),
        sa.Column("record", sa.JSON()),
    )
    op.create_table(
        "deployment_cameras",
        _deployment_id(primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("faces_scanned", sa.BigInteger(), nullable=False),
        sa.Column("frames_dropped", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "deployment_gaps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _deployment_id(),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _deployment_id(),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("source_time", sa.Float(), nullable=False),
        sa.Column("wall_time", WHEN, nullable=False, index=True),
        sa.Column(
            "status", _enum("alert_status", 24, "pending", "confirmed_match", "false_alert", "no_further_action"),
            nullable=False, index=True,
        ),
        sa.Column("adjudicated_by", sa.String(200)),
        sa.Column("adjudicated_at", WHEN),
        sa.Column("outcome", _enum("alert_outcome", 24, "no_action", "engaged", "words_of_advice", "arrested", "other")),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("held_by", sa.String(200)),
        sa.Column("held_at", WHEN),
        sa.Column("hold_reason", sa.Text()),
        sa.Column("media_deleted_at", WHEN),
    )
    op.create_table(
        "alert_media",
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", _enum("media_kind", 16, "probe_crop", "frame"), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    for table in ("alert_media", "alerts", "deployment_gaps", "deployment_cameras", "deployments"):
        op.drop_table(table)
