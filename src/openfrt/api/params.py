"""Parameter types the API's operations and the console's pages share, bounded to what the
database can hold: a number past 64 bits is refused with 422 where it arrives, instead of
reaching a query that fails with 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

#: The largest integer key or offset SQLite and PostgreSQL (BIGINT) can hold.
MAX_ROW_ID = 2**63 - 1

#: An alert, reference image or API token id in a path.
RecordId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
