"""Initial schema: subjects, reference images, templates, watchlists, append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-01-05
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
CATEGORY = sa.Enum(
    "wanted", "suspect", "missing", "at_risk", "victim", "witness", "other",
    name="subject_category", native_enum=False, create_constraint=True, length=16,
)

#: The audit log is append-only in the database itself, not just by the absence of code paths:
#: an UPDATE or DELETE on audit_events fails whoever issues it.
SQLITE_AUDIT_GUARDS = [
    f"CREATE TRIGGER audit_events_no_{verb} BEFORE {verb.upper()} ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
    for verb in ("update", "delete")
]
POSTGRES_AUDIT_GUARDS = [
    "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("category", CATEGORY, nullable=False),
        sa.Column("notes", sa.Text()),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "reference_images",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subject_id", sa.String(128), sa.ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("face_box", sa.JSON(), nullable=False),
        sa.Column("legal_basis", sa.Text()),
        sa.Column("source", sa.Text()),
        sa.Column("captured_at", WHEN),
        sa.Column("enrolled_at", WHEN, nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "reference_image_id", sa.Integer(), sa.ForeignKey("reference_images.id", ondelete="CASCADE"),
            nullable=False, index=True,
        ),
        sa.Column("model_id", sa.String(100), nullable=False, index=True),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("reference_image_id", "model_id"),
    )
    op.create_table(
        "watchlists",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("criteria", sa.Text()),
        sa.Column("authorised_by", sa.String(200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    op.create_table(
        "watchlist_members",
        sa.Column("watchlist_id", sa.Integer(), sa.ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subject_id", sa.String(128), sa.ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True, index=True),
        sa.Column("added_at", WHEN, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("at", WHEN, nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(60), nullable=False, index=True),
        sa.Column("target", sa.Text()),
        sa.Column("case_ref", sa.String(200)),
        sa.Column("reason", sa.Text()),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_table(
        "store_meta",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
    )
    guards = POSTGRES_AUDIT_GUARDS if op.get_bind().dialect.name == "postgresql" else SQLITE_AUDIT_GUARDS
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    for table in ("store_meta", "audit_events", "watchlist_members", "watchlists", "templates", "reference_images", "subjects"):
        op.drop_table(table)
