"""Alembic environment for the records store.

openfrt runs migrations itself (:func:`openfrt.records.database.upgrade`) on a connection it
passes in ``config.attributes["connection"]``, so no ``alembic.ini`` or URL is needed here
and the migrations work from an installed wheel.
"""

from __future__ import annotations

from alembic import context

from openfrt.records.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
