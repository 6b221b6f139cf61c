"""The records' fixed vocabularies: subject categories, deployment and alert states, outcomes, roles.

They live apart from the schema (:mod:`openfrt.records.models`, which re-exports them) so that
the command line can offer them as choices without loading the database layer.
"""

from __future__ import annotations

import enum


class Category(str, enum.Enum):
    """Why a subject is in the reference database; watchlist criteria are usually built on it."""

    wanted = "wanted"
    suspect = "suspect"
    missing = "missing"
    at_risk = "at_risk"
    victim = "victim"
    witness = "witness"
    other = "other"


class DeploymentStatus(str, enum.Enum):
    """A deployment only moves forward: planned → running → ended."""

    planned = "planned"
    running = "running"
    ended = "ended"


class AlertStatus(str, enum.Enum):
    """An officer's verdict on an alert; once adjudicated it never returns to ``pending``."""

    pending = "pending"
    confirmed_match = "confirmed_match"
    false_alert = "false_alert"
    no_further_action = "no_further_action"


class PerceivedEthnicity(str, enum.Enum):
    """The five broad ethnic groups of the census, as the adjudicating officer perceives them.

    Recorded (optionally) with an adjudication so that false alerts can be published per group:
    the fairness of a deployed system is measured on its own alerts, not only in the laboratory.
    """

    asian = "asian"
    black = "black"
    mixed = "mixed"
    white = "white"
    other = "other"


class PerceivedSex(str, enum.Enum):
    female = "female"
    male = "male"


class AlertOutcome(str, enum.Enum):
    """What happened after the alert (published in the deployment record)."""

    no_action = "no_action"
    engaged = "engaged"
    words_of_advice = "words_of_advice"
    arrested = "arrested"
    other = "other"


class MediaKind(str, enum.Enum):
    """The two images kept with an alert: the matched face, and the frame with others pixelated."""

    probe_crop = "probe_crop"
    frame = "frame"


class Role(str, enum.Enum):
    """What a user may do on the server; the API maps each role to its permitted actions."""

    operator = "operator"
    engagement_officer = "engagement_officer"
    authorising_officer = "authorising_officer"
    auditor = "auditor"
    admin = "admin"
    #: A monitoring system (Prometheus): reads the server's metrics and nothing else.
    monitoring = "monitoring"


class FootageSearchStatus(str, enum.Enum):
    """Where a footage search is: searching the file, finished (leads stored) or failed."""

    running = "running"
    done = "done"
    failed = "failed"
