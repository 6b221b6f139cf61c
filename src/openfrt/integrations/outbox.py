"""The transactional outbox: an event is written in the transaction of the change it reports.

So it exists exactly when the change does — an alert rolled back leaves no event, a committed
one always has its event — whichever process made the change (the server, or ``openfrt live``
on another machine sharing the database). Each destination that wants the event gets its own
delivery row, with its own retry state and a delivery id for receivers to de-duplicate on.
Nothing is sent here: the dispatcher does that later, so a slow or absent receiver never
holds up a camera or a request. With no destination configured, nothing is written.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from openfrt.integrations.events import Event
from openfrt.records.models import DeliveryStatus, EventDelivery, EventDestination, OutboxEvent


def emit(session: Session, event: Event) -> OutboxEvent | None:
    """Queue ``event`` for every destination subscribed to its type, in ``session``'s transaction."""
    destinations = session.execute(select(EventDestination.id, EventDestination.events)).all()
    wanted = [destination for destination, events in destinations if not events or event.type.value in events]
    if not wanted:
        return None
    row = OutboxEvent(
        event_id=event.id, type=event.type.value, deployment=event.deployment, occurred_at=event.occurred_at,
        payload=event.payload(),
        deliveries=[
            EventDelivery(destination_id=destination, delivery_id=str(uuid.uuid4()), status=DeliveryStatus.pending,
                          attempts=0, retrying_since=event.occurred_at, next_attempt_at=event.occurred_at)
            for destination in wanted
        ],
    )
    session.add(row)
    return row
