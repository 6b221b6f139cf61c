"""A watchlist's default threshold and expected accuracy, from the model's shipped calibration.

The 1:1 threshold of a model is the wrong threshold for a watchlist: every probe is compared
with every subject, so false alerts grow with the watchlist's size. The open-set calibration
(:mod:`openfrt.evaluation.calibration`) says which threshold keeps false alerts at the target
and what TPIR/FPIR a given threshold and size should give, so operators see it before deploying.
It also sets the floor below which one officer's authority is not enough (:class:`ThresholdCheck`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from openfrt.evaluation import calibration

log = logging.getLogger(__name__)


def default_threshold(model_id: str, fallback: float) -> float:
    """The calibrated open-set threshold of ``model_id``; ``fallback`` (the 1:1 one) if unmeasured."""
    chosen = calibration.default_watchlist_threshold(model_id)
    if chosen is None:
        log.warning("no open-set calibration for %s: using its 1:1 threshold %.3f for the watchlist", model_id, fallback)
        return fallback
    return float(chosen)


def expected_fitness(model_id: str, threshold: float, watchlist_size: int, reference_images: int = 1) -> dict[str, Any] | None:
    """Expected ``tpir``, ``fpir``, ``target_fpir``, ``meets_target`` and ``message``; None when
    the model is uncalibrated (accuracy unknown, which callers must say rather than guess)."""
    fitness = calibration.expected_performance(
        model_id, threshold, max(1, watchlist_size), reference_images=reference_images
    )
    return dataclasses.asdict(fitness) if fitness is not None else None


@dataclass(frozen=True)
class ThresholdCheck:
    """A deployment's threshold against the documented floor for its model and watchlist size
    (:data:`openfrt.evaluation.calibration.FLOOR_FPIR`, 1 false alert in 1,000 searches).

    Below the floor — or for a model without calibration, whose false-alert rate is unknown —
    a second authorising officer must approve it with a recorded justification.
    """

    threshold: float
    model_id: str
    watchlist_size: int
    floor: float | None  # None: the model is uncalibrated

    @classmethod
    def of(cls, model_id: str, threshold: float, watchlist_size: int, reference_images: int = 1) -> ThresholdCheck:
        return cls(threshold, model_id, watchlist_size, calibration.floor_threshold(model_id, watchlist_size, reference_images))

    @property
    def needs_approval(self) -> bool:
        return self.floor is None or self.threshold < self.floor

    def describe(self) -> str:
        subjects = f"{self.watchlist_size:,} watchlist subject{'' if self.watchlist_size == 1 else 's'}"
        if self.floor is None:
            return f"{self.model_id} is uncalibrated: the false alerts of threshold {self.threshold:.4f} against {subjects} are unknown"
        relation = "below" if self.threshold < self.floor else "at or above"
        return (f"threshold {self.threshold:.4f} is {relation} the floor {self.floor:.4f} of {self.model_id} against {subjects} "
                f"(1 false alert in {round(1 / calibration.FLOOR_FPIR):,} searches)")

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "model_id": self.model_id, "watchlist_size": self.watchlist_size,
                "floor": self.floor, "needs_approval": self.needs_approval}
