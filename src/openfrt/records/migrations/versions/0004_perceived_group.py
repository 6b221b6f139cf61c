"""The adjudicating officer's perception of a person's ethnic group and sex, per alert, so that
true and false alerts can be published per demographic group.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ETHNICITY = sa.Enum("asian", "black", "mixed", "white", "other", name="perceived_ethnicity", native_enum=False, create_constraint=True, length=16)
SEX = sa.Enum("female", "male", name="perceived_sex", native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("perceived_ethnicity", ETHNICITY, nullable=True))
        batch.add_column(sa.Column("perceived_sex", SEX, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("perceived_sex")
        batch.drop_column("perceived_ethnicity")
