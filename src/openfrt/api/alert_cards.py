"""An alert as the officers' cards show it: the alert, who the subject is and why they are on
the watchlist, the other candidates that also reached the threshold, and people by their
public names. The list, the single alert, the verdict answers and the live feed all send this.

Anyone who may see alerts sees who was matched: an engagement officer must know whom to look
for before approaching anyone. Nothing is added about candidates below the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openfrt.api.people import People
from openfrt.gallery import Gallery
from openfrt.live.alerts import AlertInfo
from openfrt.records.users import UserService


def alert_cards(gallery: Gallery, users: UserService, alerts: Sequence[AlertInfo]) -> list[dict[str, Any]]:
    """``alerts`` as JSON with ``subject_info`` (None if the subject was since removed), the other
    candidates above the threshold with their names, and ``names`` of the officers involved."""
    if not alerts:
        return []  # a console polling for new alerts mostly finds none: no lookups then
    wanted = {(subject, alert.watchlist) for alert in alerts for subject in _shown_subjects(alert)}
    listings = gallery.listings(wanted)
    people = People(users)
    cards = []
    for alert in alerts:
        main = listings.get((alert.subject, alert.watchlist))
        others = [
            {"subject": subject, "similarity": score,
             "display_name": other.display_name if (other := listings.get((subject, alert.watchlist))) else None}
            for subject, score in alert.others_above_threshold
        ]
        officers = [alert.adjudicated_by, alert.held_by, *(verdict.adjudicated_by for verdict in alert.verdicts)]
        cards.append({**alert.as_dict(), "subject_info": main.as_dict() if main else None, "others_above_threshold": others,
                      "names": people.names(officers)})
    return cards


def _shown_subjects(alert: AlertInfo) -> list[str]:
    return [alert.subject, *(subject for subject, _ in alert.others_above_threshold)]
