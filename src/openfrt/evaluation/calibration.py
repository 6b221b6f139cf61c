"""Shipped open-set calibration: what a threshold and watchlist size mean for a model.

``calibration/<model>.json`` files (package data) are written by ``openfrt evaluate
--write-calibration`` from measured 1:N searches (protocol in ``docs/evaluation.md``). Each
holds, for a few watchlist sizes N, a table of threshold -> (TPIR, FPIR), and the default
watchlist threshold chosen for the target FPIR.

Between and beyond measured points the numbers are interpolated with explicit models:

- **threshold**: TPIR linearly, FPIR linearly in log(FPIR), between the two nearest rows;
  outside the table the end row is used (so a threshold above the table is reported with the
  top row's figures, which over-states false alerts rather than hiding them).
- **watchlist size**: a non-mated search alerts if *any* of N comparisons reaches the
  threshold, so ``FPIR(N) = 1 - (1 - p)^N`` with ``p`` the per-comparison false-match rate,
  i.e. roughly proportional to N while FPIR is small. ``p`` is taken from the measured size
  nearest (in log N) to the one asked for and scaled to N. TPIR changes slowly with N (a
  larger watchlist only adds impostors who could out-rank the true subject), so it is
  interpolated linearly in log N and held constant outside the measured sizes.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

#: Target false-positive identification rate per search: one false alert in 6,000 searches of
#: people not on the watchlist, against a watchlist of :data:`DEFAULT_WATCHLIST_SIZE`.
DEFAULT_TARGET_FPIR = 1 / 6000
DEFAULT_WATCHLIST_SIZE = 1000

#: The most false alerts a live deployment may be set to risk on one officer's authority: one in
#: 1,000 searches of people not on the watchlist, at the watchlist's own size. A threshold with
#: more (a lower one) needs a second authorising officer's recorded approval
#: (:meth:`openfrt.live.deployments.DeploymentService.approve_threshold`).
FLOOR_FPIR = 1 / 1000

#: Package-data folder (beside this module) holding one ``<model>.json`` per calibrated model.
CALIBRATION_DIR = "calibration"


@dataclass(frozen=True)
class Fitness:
    """Expected open-set performance of a setting, and a sentence saying whether it is fit."""

    tpir: float
    fpir: float
    target_fpir: float
    meets_target: bool
    message: str


@dataclass(frozen=True)
class CalibrationTable:
    """Measured threshold -> (TPIR, FPIR) rows for one watchlist size, thresholds ascending."""

    watchlist_size: int
    thresholds: tuple[float, ...]
    tpir: tuple[float, ...]
    fpir: tuple[float, ...]

    def at(self, threshold: float) -> tuple[float, float]:
        """(TPIR, FPIR) at ``threshold``: TPIR interpolated linearly, FPIR in log space."""
        i = bisect_left(self.thresholds, threshold)
        if i == 0:
            return self.tpir[0], self.fpir[0]
        if i == len(self.thresholds):
            return self.tpir[-1], self.fpir[-1]
        low, high = self.thresholds[i - 1], self.thresholds[i]
        w = (threshold - low) / (high - low)
        tpir = self.tpir[i - 1] + w * (self.tpir[i] - self.tpir[i - 1])
        return tpir, _log_interpolate(self.fpir[i - 1], self.fpir[i], w)


@dataclass(frozen=True)
class Calibration:
    """What was measured for one model id and one way of enrolling.

    ``reference_images`` 1 means one image per subject; ``k > 1`` means up to ``k`` images per
    subject enrolled as their mean template (:func:`openfrt.evaluation.scoring.subject_scores`
    with ``fusion="mean-template"``), which scores differently and so has its own threshold.
    """

    model_id: str
    reference_images: int
    default_threshold: float
    target_fpir: float
    tables: tuple[CalibrationTable, ...]  # watchlist sizes ascending
    source: dict[str, Any]

    def expected(self, threshold: float, watchlist_size: int) -> tuple[float, float]:
        """(TPIR, FPIR) at ``threshold`` for a watchlist of ``watchlist_size`` (module docstring)."""
        sizes = [t.watchlist_size for t in self.tables]
        log_n = math.log(max(1, watchlist_size))
        nearest = min(self.tables, key=lambda t: abs(math.log(t.watchlist_size) - log_n))
        _, fpir_nearest = nearest.at(threshold)
        per_comparison = 1.0 - (1.0 - fpir_nearest) ** (1.0 / nearest.watchlist_size)
        fpir = 1.0 - (1.0 - per_comparison) ** max(1, watchlist_size)
        i = bisect_left(sizes, watchlist_size)
        if i == 0 or i == len(sizes):
            return self.tables[min(i, len(sizes) - 1)].at(threshold)[0], fpir
        low, high = self.tables[i - 1], self.tables[i]
        w = (log_n - math.log(low.watchlist_size)) / (math.log(high.watchlist_size) - math.log(low.watchlist_size))
        tpir = low.at(threshold)[0] + w * (high.at(threshold)[0] - low.at(threshold)[0])
        return tpir, fpir


    def lowest_threshold_for(self, fpir: float, watchlist_size: int) -> float:
        """The lowest threshold at which the calibration shows at most ``fpir`` false alerts per
        search of a ``watchlist_size`` watchlist — never below what was measured.

        Between measured rows it is found by bisection on :meth:`expected` (FPIR falls as the
        threshold rises). Below the lowest measured row nothing is known, so that row is the
        floor — unless the calibrated default threshold lies lower and its own measured rate
        (:attr:`target_fpir` at :data:`DEFAULT_WATCHLIST_SIZE` subjects), scaled to this size
        as in :meth:`expected`, already meets ``fpir``. When even the highest measured row
        does not, that row is the floor: nothing lower can be justified.
        """
        measured = sorted({threshold for table in self.tables for threshold in table.thresholds})

        def meets(threshold: float) -> bool:
            return self.expected(threshold, watchlist_size)[1] <= fpir

        first = next((i for i, threshold in enumerate(measured) if meets(threshold)), None)
        if first is None:
            floor = measured[-1]
        elif first == 0:
            floor = measured[0]
        else:
            low, high = measured[first - 1], measured[first]
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (low, middle) if meets(middle) else (middle, high)
            floor = high
        per_comparison = 1.0 - (1.0 - self.target_fpir) ** (1.0 / DEFAULT_WATCHLIST_SIZE)
        if 1.0 - (1.0 - per_comparison) ** max(1, watchlist_size) <= fpir:
            floor = min(floor, self.default_threshold)
        return floor


def _log_interpolate(a: float, b: float, w: float) -> float:
    """Interpolate between two rates in log space (exact for exponential tails); zeros stay linear."""
    if a <= 0.0 or b <= 0.0:
        return a + w * (b - a)
    return math.exp(math.log(a) + w * (math.log(b) - math.log(a)))


def calibration_from_dict(data: dict[str, Any]) -> Calibration:
    """A :class:`Calibration` from the JSON form written by :func:`calibration_to_dict`."""
    tables = []
    for table in sorted(data["tables"], key=lambda t: t["watchlist_size"]):
        rows = sorted(table["rows"], key=lambda row: row["threshold"])
        tables.append(
            CalibrationTable(
                watchlist_size=int(table["watchlist_size"]),
                thresholds=tuple(float(r["threshold"]) for r in rows),
                tpir=tuple(float(r["tpir"]) for r in rows),
                fpir=tuple(float(r["fpir"]) for r in rows),
            )
        )
    return Calibration(
        model_id=data["model_id"],
        reference_images=int(data.get("reference_images", 1)),
        default_threshold=float(data["default_threshold"]),
        target_fpir=float(data["target_fpir"]),
        tables=tuple(tables),
        source=data.get("source", {}),
    )


def calibration_to_dict(calibration: Calibration) -> dict[str, Any]:
    """The JSON form of one calibration; a shipped file holds a list of them (:func:`calibration_file`)."""
    return {
        "model_id": calibration.model_id,
        "reference_images": calibration.reference_images,
        "default_threshold": calibration.default_threshold,
        "target_fpir": calibration.target_fpir,
        "source": calibration.source,
        "tables": [
            {
                "watchlist_size": table.watchlist_size,
                "rows": [
                    {"threshold": round(t, 4), "tpir": round(tp, 5), "fpir": float(f"{fp:.4g}")}
                    for t, tp, fp in zip(table.thresholds, table.tpir, table.fpir)
                ],
            }
            for table in calibration.tables
        ],
    }


def calibration_file(calibrations: list[Calibration]) -> dict[str, Any]:
    """The content of a shipped ``calibration/<model>.json``: every enrolment measured for one model."""
    return {"calibrations": [calibration_to_dict(c) for c in calibrations]}


@cache
def shipped_calibrations() -> dict[str, tuple[Calibration, ...]]:
    """Every calibration shipped with openfrt, by model id."""
    found: dict[str, list[Calibration]] = {}
    for entry in (resources.files("openfrt.evaluation") / CALIBRATION_DIR).iterdir():
        if entry.name.endswith(".json"):
            for item in json.loads(entry.read_text(encoding="utf-8"))["calibrations"]:
                calibration = calibration_from_dict(item)
                found.setdefault(calibration.model_id, []).append(calibration)
    return {model: tuple(sorted(items, key=lambda c: c.reference_images)) for model, items in found.items()}


def calibration_for(model_id: str, reference_images: int = 1) -> Calibration | None:
    """The shipped calibration of ``model_id`` (e.g. ``"dlib-resnet@v1"``) measured with the
    number of reference images per subject nearest to ``reference_images`` (ties: the larger,
    whose threshold is higher); None if the model is unmeasured."""
    measured = shipped_calibrations().get(model_id)
    if not measured:
        return None
    return min(measured, key=lambda c: (abs(c.reference_images - reference_images), -c.reference_images))


def default_watchlist_threshold(model_id: str, reference_images: int = 1) -> float | None:
    """The 1:N threshold measured to keep FPIR at or below the target (1 in 6,000 searches
    against a 1,000-subject watchlist) for ``model_id``; None when the model is uncalibrated.

    With several reference images per subject enrolled as a mean template, pass how many:
    mean templates score higher against everyone and need a higher threshold.
    """
    calibration = calibration_for(model_id, reference_images)
    return calibration.default_threshold if calibration else None


def floor_threshold(model_id: str, watchlist_size: int, reference_images: int = 1, fpir: float = FLOOR_FPIR) -> float | None:
    """The lowest threshold a deployment of a ``watchlist_size`` watchlist may use on one
    authorising officer's authority (:data:`FLOOR_FPIR`); None when ``model_id`` is
    uncalibrated, whose false-alert rate nobody knows."""
    calibration = calibration_for(model_id, reference_images)
    return calibration.lowest_threshold_for(fpir, max(1, watchlist_size)) if calibration else None


def expected_performance(
    model_id: str,
    threshold: float,
    watchlist_size: int,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    reference_images: int = 1,
) -> Fitness | None:
    """Expected TPIR and FPIR of searching a ``watchlist_size`` watchlist at ``threshold``.

    Used to warn operators before a deployment whose settings will miss most subjects or raise
    too many false alerts. None when ``model_id`` has no shipped calibration, so callers can say
    "accuracy unmeasured" instead of inventing figures.
    """
    calibration = calibration_for(model_id, reference_images)
    if calibration is None:
        return None
    tpir, fpir = calibration.expected(threshold, watchlist_size)
    meets = fpir <= target_fpir
    return Fitness(tpir, fpir, target_fpir, meets, _fitness_message(model_id, threshold, watchlist_size, tpir, fpir, target_fpir))


def _one_in(rate: float) -> str:
    return "almost never" if rate <= 0 else f"about 1 in {max(1, round(1 / rate)):,}"


def _fitness_message(
    model_id: str, threshold: float, watchlist_size: int, tpir: float, fpir: float, target_fpir: float
) -> str:
    verdict = "within" if fpir <= target_fpir else "ABOVE"
    return (
        f"{model_id} at threshold {threshold:.3f} against {watchlist_size:,} watchlist subjects: expected to find "
        f"{tpir:.0%} of watchlist subjects who pass (TPIR) and to false-alert on {_one_in(fpir)} people "
        f"not on the watchlist (FPIR {fpir:.2g}), {verdict} the target of {_one_in(target_fpir)} "
        f"(FPIR {target_fpir:.2g}); measured on LFW/UTKFace stills, live video is usually worse."
    )
