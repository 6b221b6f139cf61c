"""Footage searches the server runs in the background, one at a time, and how far each has got.

An officer starts a search on a file already in the footage directory (hours of video are
not uploaded through a browser); the request returns as soon as the search is checked and
recorded, and the console polls its progress. One search runs at a time: each uses the cores
fully, and the server also serves live deployments.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from openfrt.errors import OpenFRTError
from openfrt.footage.search import FootageSearch, Progress
from openfrt.records.errors import DuplicateRecordError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FootageRequest:
    file: str
    case_ref: str
    reason: str
    top: int = 5
    threshold: float | None = None


class FootageSearchBusy(DuplicateRecordError):
    """Another footage search is running on this server."""


@dataclass
class _Start:
    """Hand-over from the search's thread to the request: its id once recorded, or why it was refused."""

    done: threading.Event = field(default_factory=threading.Event)
    search_id: int | None = None
    error: BaseException | None = None


class FootageJobs:
    """Runs one :class:`FootageSearch` at a time in a background thread; keeps running searches' progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._progress: dict[int, Progress] = {}

    def start(self, search: FootageSearch, request: FootageRequest, actor: str) -> int:
        """Check and record the search, start it, and return its id; raises what the checks raise."""
        with self._lock:
            if self._busy:
                raise FootageSearchBusy("another footage search is still running; one runs at a time")
            self._busy = True
        handover = _Start()

        def on_start(search_id: int) -> None:
            handover.search_id = search_id
            handover.done.set()

        def on_progress(progress: Progress) -> None:
            with self._lock:
                self._progress[handover.search_id or 0] = progress

        def run() -> None:
            try:
                search.run(request.file, case_ref=request.case_ref, reason=request.reason, actor=actor, top=request.top,
                           threshold=request.threshold, on_start=on_start, on_progress=on_progress)
            except BaseException as exc:  # noqa: BLE001 - before the start it goes to the caller; after, it is recorded
                if not handover.done.is_set():
                    handover.error = exc
                    handover.done.set()
                elif not isinstance(exc, OpenFRTError):
                    log.exception("footage search %s failed", handover.search_id)
            finally:
                with self._lock:
                    self._busy = False
                    self._progress.pop(handover.search_id or 0, None)

        threading.Thread(target=run, name="footage search", daemon=True).start()
        handover.done.wait()
        if handover.error is not None:
            raise handover.error
        assert handover.search_id is not None
        return handover.search_id

    def progress(self, search_id: int) -> Progress | None:
        """How far a search running here has got; None when it is not running here."""
        with self._lock:
            return self._progress.get(search_id)
