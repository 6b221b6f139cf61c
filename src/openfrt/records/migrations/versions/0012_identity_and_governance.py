"""Identity and governance: the credential behind every audit entry, who planned each
deployment (who may then not authorise it), a second officer's approval of a threshold below
the floor, and why a watchlist is kept beyond one deployment.

Watchlists that exist when this runs are marked standing, with that said as the reason: they
were made before a watchlist could belong to one deployment, and destroying them when some
deployment ends would surprise whoever relies on them.

``audit_events.credential`` is added empty: entries written before it hash without it (see
``OPTIONAL_HASHED_FIELDS`` in :mod:`openfrt.records.audit`), so an upgraded log still verifies
and no entry has to be rewritten. Adding a nullable column changes no row, so the append-only
triggers stay in place.

Revision ID: 0012
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXISTING_WATCHLISTS = "created before watchlists could belong to one deployment (migration 0012)"


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("credential", sa.String(80), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("planned_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("threshold_approval", sa.JSON(), nullable=True))
    with op.batch_alter_table("watchlists") as batch:
        batch.add_column(sa.Column("standing_reason", sa.Text(), nullable=True))
    op.execute(sa.text("UPDATE watchlists SET standing_reason = :reason").bindparams(reason=EXISTING_WATCHLISTS))


def downgrade() -> None:
    with op.batch_alter_table("watchlists") as batch:
        batch.drop_column("standing_reason")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("threshold_approval")
        batch.drop_column("planned_by")
    credentialed = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_events WHERE credential IS NOT NULL"))
    if credentialed:
        raise RuntimeError(
            f"{credentialed} audit entries record their credential, which their hashes cover: "
            "dropping the column would make the log fail verification"
        )
    # A plain ALTER (SQLite 3.35+ and PostgreSQL): batch mode would copy the table, which the
    # append-only triggers refuse.
    op.execute("ALTER TABLE audit_events DROP COLUMN credential")
