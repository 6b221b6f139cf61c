"""Footage searches in the records store: the search, its leads (encrypted), its audit and retention.

A footage search is a retrospective search, held to its rules: a case reference and a reason,
and an audit entry. It is **one** audit entry per search, written when the search ends (or
fails), listing every subject proposed: an hour of footage is thousands of probes, and an entry
per probe or lead would bury the log without saying more — the entry names the search, whose
leads (who was proposed, when in the file) are kept with it until retention.

Leads' face crops and frames are encrypted with the store's cipher, as alert images are, and
deleted by the same rule (:func:`purge_leads`, run by :func:`openfrt.live.retention.run_retention`):
once the search finished the retention period ago, unless it is on hold. The search row stays.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from openfrt.records.audit import AuditAction, record_event
from openfrt.records.errors import InvalidRecordError, RecordNotFoundError
from openfrt.records.models import FootageLead, FootageSearch, FootageSearchStatus, utc_now
from openfrt.records.store import RecordStore
from openfrt.records.text import SHORT_TEXT, check_text

if TYPE_CHECKING:
    from openfrt.footage.leads import Lead
    from openfrt.footage.search import FootageResult


def check_request(case_ref: str | None, reason: str | None) -> None:
    """Refuse a search without a case reference and a reason (as every retrospective search)."""
    if not (case_ref and case_ref.strip() and reason and reason.strip()):
        raise InvalidRecordError("a footage search is a retrospective search: it needs a case reference and a reason")
    check_text(case_ref, "case reference", limit=SHORT_TEXT)
    check_text(reason, "reason for the search")


def start(store: RecordStore, *, file: str, case_ref: str, reason: str, actor: str, model_id: str, threshold: float,
          top: int) -> int:
    """Record a search as running; returns its id."""
    with store.transaction() as session:
        row = FootageSearch(file=file, case_ref=case_ref, reason=reason, actor=str(actor), model_id=model_id,
                            threshold=threshold, top=top, status=FootageSearchStatus.running, runner=this_process())
        session.add(row)
        session.flush()
        return row.id


def this_process() -> str:
    """``host:pid``: which process runs a search."""
    return f"{socket.gethostname()}:{os.getpid()}"


def end_abandoned(store: RecordStore) -> list[int]:
    """Mark as failed (and audit, as any failed search) the searches recorded as running by a
    process of this host that no longer exists; returns their ids. Searches run on other hosts
    are left to those hosts (their processes cannot be seen from here)."""
    host = socket.gethostname()
    with store.transaction() as session:
        running = session.scalars(select(FootageSearch).where(FootageSearch.status == FootageSearchStatus.running)).all()
        abandoned = [(row.id, row.actor) for row in running if _dead_here(row.runner, host)]
    for search_id, actor in abandoned:
        fail(store, search_id, actor, ABANDONED, [])
    return [search_id for search_id, _ in abandoned]


#: The error recorded for a search whose process stopped before it ended.
ABANDONED = "interrupted: the process running the search stopped before it ended; its leads were not kept"


def _dead_here(runner: str | None, host: str) -> bool:
    runner_host, _, pid = (runner or "").rpartition(":")
    if runner_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def finish(store: RecordStore, search_id: int, actor: str, result: FootageResult) -> None:
    """Store the leads (encrypted), mark the search done and audit it, in one transaction."""
    _close(store, search_id, actor, result.leads, FootageSearchStatus.done, result.summary(), None)


def fail(store: RecordStore, search_id: int, actor: str, error: str, leads: list[Lead]) -> None:
    """Mark the search failed, keeping the leads it had found, and audit it."""
    _close(store, search_id, actor, leads, FootageSearchStatus.failed, None, error)


def _close(store: RecordStore, search_id: int, actor: str, leads: list[Lead], status: FootageSearchStatus,
           summary: dict[str, Any] | None, error: str | None) -> None:
    with store.transaction() as session:
        row = _row(session, search_id)
        row.leads = [
            FootageLead(time=lead.time, first_seen=lead.first_seen, last_seen=lead.last_seen, similarity=lead.similarity,
                        sightings=lead.sightings, candidates=[list(candidate) for candidate in lead.candidates],
                        probe_crop=store.cipher.encrypt(lead.probe_crop), frame=store.cipher.encrypt(lead.frame))
            for lead in leads
        ]
        row.status, row.summary, row.error, row.finished_at = status, summary, error, utc_now()
        proposed = sorted({subject for lead in leads for subject, _ in lead.candidates})
        record_event(
            session, AuditAction.retrospective_search, actor=actor, target=f"footage:{row.file}", case_ref=row.case_ref,
            reason=row.reason,
            details={"kind": "footage", "search": row.id, "model_id": row.model_id, "top": row.top, "threshold": row.threshold,
                     "leads": len(leads), "candidates": proposed, "status": status.value, **({"error": error} if error else {})},
        )


@dataclass(frozen=True)
class LeadInfo:
    """A stored lead without its images (fetched one at a time)."""

    id: int
    time: float
    first_seen: float
    last_seen: float
    similarity: float
    sightings: int
    candidates: tuple[tuple[str, float], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "first_seen": self.first_seen, "last_seen": self.last_seen,
                "similarity": self.similarity, "sightings": self.sightings,
                "candidates": [{"subject": s, "similarity": v, "rank": r} for r, (s, v) in enumerate(self.candidates, 1)]}


@dataclass(frozen=True)
class SearchInfo:
    """A stored footage search and its leads (while retention has not deleted them)."""

    id: int
    file: str
    case_ref: str
    reason: str
    actor: str
    model_id: str
    threshold: float
    top: int
    status: FootageSearchStatus
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None
    error: str | None
    held_by: str | None
    leads_deleted_at: datetime | None
    leads: tuple[LeadInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "case_ref": self.case_ref, "reason": self.reason, "actor": self.actor,
                "model_id": self.model_id, "threshold": self.threshold, "top": self.top, "status": self.status.value,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None, "summary": self.summary,
                "error": self.error, "held": self.held_by is not None,
                "leads_deleted_at": self.leads_deleted_at.isoformat() if self.leads_deleted_at else None,
                "leads": [lead.as_dict() for lead in self.leads]}


def get(store: RecordStore, search_id: int) -> SearchInfo:
    with store.transaction() as session:
        row = _row(session, search_id)
        return _info(row)


def recent(store: RecordStore, limit: int = 50) -> list[SearchInfo]:
    """The latest searches, newest first (with their leads' facts, not images)."""
    with store.transaction() as session:
        rows = session.scalars(select(FootageSearch).order_by(FootageSearch.id.desc()).limit(limit)).all()
        return [_info(row) for row in rows]


def lead_image(store: RecordStore, search_id: int, lead_id: int, kind: str, *, actor: str, reason: str) -> bytes:
    """A lead's ``crop`` or ``frame`` JPEG, decrypted; each viewing is audited, as alert images' are."""
    if kind not in ("crop", "frame"):
        raise InvalidRecordError(f"a lead has a crop and a frame, not a {kind!r}")
    with store.transaction() as session:
        lead = session.scalar(select(FootageLead).options(undefer(FootageLead.probe_crop), undefer(FootageLead.frame))
                              .where(FootageLead.id == lead_id, FootageLead.search_id == search_id))
        if lead is None:
            raise RecordNotFoundError(f"footage search {search_id} has no lead {lead_id}")
        record_event(session, AuditAction.alert_media_viewed, actor=actor, target=f"footage_search:{search_id}", reason=reason,
                     details={"footage_search": search_id, "lead": lead_id, "kind": kind})
        return store.cipher.decrypt(lead.probe_crop if kind == "crop" else lead.frame)


def purge_leads(session: Session, cutoff: datetime, period: int, actor: str, moment: datetime) -> tuple[list[int], list[int]]:
    """Delete the leads of searches that finished at or before ``cutoff`` unless held, one audit
    entry per search; returns the searches purged and those held."""
    due = session.scalars(
        select(FootageSearch).where(FootageSearch.finished_at <= cutoff, FootageSearch.leads.any()).order_by(FootageSearch.id)
    ).all()
    purged, held = [], []
    for row in due:
        if row.held_by is not None:
            held.append(row.id)
            continue
        record_event(session, AuditAction.alert_media_deleted, actor=actor, target=f"footage_search:{row.id}",
                     reason=f"footage search leads older than the {period}-day retention period",
                     details={"footage_search": row.id, "leads": len(row.leads), "finished_at": row.finished_at.isoformat()
                              if row.finished_at else None, "as_of": moment.isoformat()})
        row.leads = []
        row.leads_deleted_at = utc_now()
        purged.append(row.id)
    return purged, held


def hold(store: RecordStore, search_id: int, *, actor: str, reason: str) -> None:
    """Keep a search's leads beyond the retention period (e.g. they are evidence), audited."""
    check_text(reason, "reason for the hold")
    with store.transaction() as session:
        row = _row(session, search_id)
        row.held_by, row.held_at, row.hold_reason = str(actor), utc_now(), reason
        record_event(session, AuditAction.alert_held, actor=actor, target=f"footage_search:{row.id}", reason=reason,
                     details={"footage_search": row.id})


def _row(session: Session, search_id: int) -> FootageSearch:
    row = session.get(FootageSearch, search_id)
    if row is None:
        raise RecordNotFoundError(f"no footage search {search_id}")
    return row


def _info(row: FootageSearch) -> SearchInfo:
    leads = tuple(LeadInfo(lead.id, lead.time, lead.first_seen, lead.last_seen, lead.similarity, lead.sightings,
                           tuple((str(s), float(v)) for s, v in lead.candidates)) for lead in row.leads)
    return SearchInfo(row.id, row.file, row.case_ref, row.reason, row.actor, row.model_id, row.threshold, row.top, row.status,
                      row.started_at, row.finished_at, row.summary, row.error, row.held_by, row.leads_deleted_at, leads)
