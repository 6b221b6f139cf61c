"""A camera's whole source, credentials included, encrypted beside the shown one, so that a
deployment planned in the console can open a password-protected stream when it starts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment_cameras") as batch:
        batch.add_column(sa.Column("sealed_source", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_cameras") as batch:
        batch.drop_column("sealed_source")
