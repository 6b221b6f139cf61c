"""Server access control and a tamper-evident audit log: users, sessions, API tokens, the audit
hash chain and its head, and deployments authorised after they are planned.

Existing audit entries are numbered and hashed in id order, exactly as
:func:`openfrt.records.audit.record_event` would have, so an upgraded log verifies. The
append-only triggers are dropped for that backfill and recreated before the migration ends,
within its transaction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The hash format is shared with the running code on purpose: the backfilled chain must be the
# one verify_chain checks, and that format can never change without invalidating every log.
from openfrt.records.audit import GENESIS_HASH, HEAD_ID, entry_hash
from openfrt.records.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
HASH = sa.String(64)
ROLE = sa.Enum(
    "operator", "engagement_officer", "authorising_officer", "auditor", "admin",
    name="user_role", native_enum=False, create_constraint=True, length=24,
)

#: Existing entries read and updated per batch while backfilling.
BACKFILL_BATCH = 1000

#: The append-only guards of 0001, dropped for the backfill and recreated after it.
SQLITE_AUDIT_GUARDS = {
    f"audit_events_no_{verb}": f"CREATE TRIGGER audit_events_no_{verb} BEFORE {verb.upper()} ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
    for verb in ("update", "delete")
}
POSTGRES_AUDIT_GUARD = (
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
)

#: The head only moves forward, one entry at a time, and cannot be deleted: rolling it back to
#: hide entries removed from the end needs these triggers dropped first.
SQLITE_HEAD_GUARDS = [
    (
        "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head "
        "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only moves forward'); END"
    ),
    (
        "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head "
        "WHEN NEW.id IS NOT OLD.id OR NEW.seq NOT IN (OLD.seq, OLD.seq + 1) "
        "BEGIN SELECT RAISE(ABORT, 'audit_chain_head only moves forward'); END"
    ),
]
POSTGRES_HEAD_GUARDS = [
    (
        "CREATE FUNCTION audit_chain_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.seq NOT IN (OLD.seq, OLD.seq + 1) THEN "
        "RAISE EXCEPTION 'audit_chain_head only moves forward'; END IF; RETURN NEW; END $$"
    ),
    (
        "CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_head "
        "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward()"
    ),
    (
        "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_forward()"
    ),
]


def _user_id() -> sa.Column:
    return sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _create_user_tables()
    _authorise_deployments_later()
    _drop_audit_guards(postgres)
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger()))
        batch.add_column(sa.Column("prev_hash", HASH))
        batch.add_column(sa.Column("entry_hash", HASH))
    head_seq, head_hash = _backfill_chain()
    with op.batch_alter_table("audit_events") as batch:
        for column, kind in (("seq", sa.BigInteger()), ("prev_hash", HASH), ("entry_hash", HASH)):
            batch.alter_column(column, existing_type=kind, nullable=False)
        batch.create_index("ix_audit_events_seq", ["seq"], unique=True)
    _create_audit_guards(postgres)

    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", HASH, nullable=False),
        sa.CheckConstraint("id = 1", name="audit_chain_head_single_row"),
    )
    op.bulk_insert(head, [{"id": HEAD_ID, "seq": head_seq, "entry_hash": head_hash}])
    for statement in POSTGRES_HEAD_GUARDS if postgres else SQLITE_HEAD_GUARDS:
        op.execute(statement)


def _create_user_tables() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _user_id(),
        sa.Column("token_hash", HASH, nullable=False, unique=True),
        sa.Column("csrf_token", HASH, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("last_seen_at", WHEN, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _user_id(),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("token_hash", HASH, nullable=False, unique=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_used_at", WHEN),
        sa.Column("revoked_at", WHEN),
    )


def _authorise_deployments_later() -> None:
    """Deployments so far were all authorised when created; say so in the new column."""
    with op.batch_alter_table("deployments") as batch:
        batch.alter_column("authorised_by", existing_type=sa.String(200), nullable=True)
        batch.add_column(sa.Column("authorised_at", WHEN))
    op.execute("UPDATE deployments SET authorised_at = created_at WHERE authorised_by IS NOT NULL")


def _drop_audit_guards(postgres: bool) -> None:
    if postgres:
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        return
    for name in SQLITE_AUDIT_GUARDS:
        op.execute(f"DROP TRIGGER {name}")


def _create_audit_guards(postgres: bool) -> None:
    for statement in [POSTGRES_AUDIT_GUARD] if postgres else SQLITE_AUDIT_GUARDS.values():
        op.execute(statement)


def _backfill_chain() -> tuple[int, str]:
    """Number and hash the existing entries in id order; returns the new head (seq, hash)."""
    events = sa.table(
        "audit_events",
        sa.column("id", sa.BigInteger()), sa.column("seq", sa.BigInteger()), sa.column("at", UTCDateTime()),
        sa.column("actor", sa.String()), sa.column("action", sa.String()), sa.column("target", sa.Text()),
        sa.column("case_ref", sa.String()), sa.column("reason", sa.Text()), sa.column("details", sa.JSON()),
        sa.column("prev_hash", HASH), sa.column("entry_hash", HASH),
    )
    assign = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values(seq=sa.bindparam("new_seq"), prev_hash=sa.bindparam("new_prev"), entry_hash=sa.bindparam("new_hash"))
    )
    connection = op.get_bind()
    seq, prev_hash, last_id = 0, GENESIS_HASH, None
    while True:
        query = sa.select(events).order_by(events.c.id).limit(BACKFILL_BATCH)
        if last_id is not None:
            query = query.where(events.c.id > last_id)
        rows = connection.execute(query).all()
        if not rows:
            return seq, prev_hash
        updates = []
        for row in rows:
            seq += 1
            digest = entry_hash({**row._mapping, "seq": seq, "prev_hash": prev_hash})
            updates.append({"row_id": row.id, "new_seq": seq, "new_prev": prev_hash, "new_hash": digest})
            prev_hash = digest
        connection.execute(assign, updates)
        last_id = rows[-1].id


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("audit_chain_head")
    if postgres:
        op.execute("DROP FUNCTION audit_chain_head_forward()")
    _drop_audit_guards(postgres)
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_seq")
        for column in ("entry_hash", "prev_hash", "seq"):
            batch.drop_column(column)
    _create_audit_guards(postgres)
    # Deployments planned but never authorised cannot exist under 0002's schema.
    op.execute("DELETE FROM deployments WHERE authorised_by IS NULL")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("authorised_at")
        batch.alter_column("authorised_by", existing_type=sa.String(200), nullable=False)
    for table in ("api_tokens", "user_sessions", "users"):
        op.drop_table(table)
