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
    cards = [alert.as_dict() for alert in alerts]
    listings = gallery.listings({(subject, card["watchlist"]) for card in cards
                                 for subject in (card["subject"], *(other for other, _ in card["others_above_threshold"]))})
    people = People(users)
    for alert, card in zip(alerts, cards):
        main = listings.get((alert.subject, alert.watchlist))
        card["subject_info"] = main.as_dict() if main else None
        card["others_above_threshold"] = [
            {"subject": subject, "similarity": score,
             "display_name": other.display_name if (other := listings.get((subject, alert.watchlist))) else None}
            for subject, score in card["others_above_threshold"]
        ]
        card["names"] = people.names([alert.adjudicated_by, alert.held_by, *(verdict.adjudicated_by for verdict in alert.verdicts)])
    return cards
