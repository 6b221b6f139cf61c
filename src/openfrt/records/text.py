"""What text the records accept: identifiers that can be typed, read and reached again, and free
text of bounded length that every database stores and every reader sees as it was written.

Identifiers (subject ids, watchlist, deployment and camera names) end up in URLs, audit entries
and published records, so they must look like what they are: no invisible or direction-changing
characters (a right-to-left override makes ``abc`` display as ``cba``), no look-alike spaces, one
spelling per appearance (Unicode NFC), and nothing a URL cannot carry to its page — a ``/`` in a
watchlist name, or a ``..`` anywhere, makes a record nobody can open again. Subject ids may hold
``/`` (custody numbers do), as their pages take the rest of the path.

Free text (purposes, reasons, notes) may be long but not unbounded — it is published, audited
and shown to officers — and may not hold control characters other than tab and line breaks
(PostgreSQL refuses NUL), nor direction overrides that would make published text read otherwise.
"""

from __future__ import annotations

import unicodedata

from openfrt.records.errors import InvalidRecordError
from openfrt.records.models import ID_LENGTH

#: Names, places, officers, case references, labels.
SHORT_TEXT = 200
#: Purposes, criteria, reasons, notes, legal bases.
LONG_TEXT = 2000

#: Characters no identifier may hold: controls, format characters (zero-width and direction
#: controls among them), surrogates, private-use and unassigned code points, and line and
#: paragraph separators.
FORBIDDEN_IN_IDENTIFIERS = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Direction embeddings, overrides and isolates, refused in free text too.
DIRECTION_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Controls free text may hold.
TEXT_CONTROLS = frozenset("\t\n\r")

#: Characters of a refused value repeated in an error message.
SHOWN_CHARS = 60


def shown(value: str) -> str:
    """``value`` quoted for an error message, shortened: a refusal must not repeat megabytes."""
    return repr(value) if len(value) <= SHOWN_CHARS else f"{value[:SHOWN_CHARS]!r}… ({len(value)} characters)"


def check_identifier(value: str, what: str, *, path: bool = False) -> None:
    """Refuse an identifier that could not be told apart, read or reached. With ``path`` it may
    hold ``/`` between non-empty parts that are not ``.`` or ``..``."""
    if not value or not value.strip() or value != value.strip():
        raise InvalidRecordError(f"{what} {shown(value)} is empty or has surrounding spaces")
    if len(value) > ID_LENGTH:
        raise InvalidRecordError(f"{what} {shown(value)} is longer than {ID_LENGTH} characters")
    if odd := next((ch for ch in value if _invisible(ch)), None):
        raise InvalidRecordError(
            f"{what} {shown(value)} holds U+{ord(odd):04X} ({unicodedata.name(odd, 'unnamed')}), an invisible, "
            "control or look-alike character"
        )
    if unicodedata.normalize("NFC", value) != value:
        raise InvalidRecordError(f"{what} {shown(value)} is not in composed form (Unicode NFC): type it again, or normalise it")
    parts = value.split("/") if path else [value]
    if "\\" in value or (not path and "/" in value) or any(part in ("", ".", "..") for part in parts):
        allowed = "parts separated by single / (none of them . or ..)" if path else "no / or \\ and is not . or .."
        raise InvalidRecordError(f"{what} {shown(value)} could not be reached by a link: it needs {allowed}")


def check_text(value: str | None, what: str, *, limit: int = LONG_TEXT, required: bool = True) -> None:
    """Refuse free text that is missing (when ``required``), longer than ``limit`` characters,
    or holds characters a database cannot store or that change how it reads."""
    if value is None or not value.strip():
        if required:
            raise InvalidRecordError(f"a {what} is required")
        if value is None:
            return
    if len(value) > limit:
        raise InvalidRecordError(f"the {what} is {len(value)} characters long; at most {limit} are kept")
    if odd := next((ch for ch in value if _hidden_in_text(ch)), None):
        raise InvalidRecordError(f"the {what} holds U+{ord(odd):04X}, a control or direction-changing character")


def _invisible(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category in FORBIDDEN_IN_IDENTIFIERS or (category == "Zs" and ch != " ")


def _hidden_in_text(ch: str) -> bool:
    return ch in DIRECTION_CONTROLS or (unicodedata.category(ch) in {"Cc", "Cs"} and ch not in TEXT_CONTROLS)
