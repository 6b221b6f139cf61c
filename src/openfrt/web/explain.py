"""Figures officers act on, said in words: what a watchlist's expected TPIR and FPIR mean for
the people who walk past, and what a search score means for the model that produced it.

A rate shown as "FPIR 0.00000" in a green box reads as "no false alerts, all clear", and a TPIR
of 15% is easy to overlook beside it. So the expected figures are given as people ("finds about
15 in 100 people on the list"; "about 1 false alert per 6,000 passers-by") and a low TPIR is
called out, never presented as an all-clear.
"""

from __future__ import annotations

from typing import Any

#: Below this expected TPIR most listed people who pass are missed; the page says so.
MOST_ARE_MISSED = 0.5


def per_passers_by(rate: float) -> str:
    """A false-alert rate per person as "about 1 false alert per N people"."""
    if rate <= 0:
        return "too rare to measure on the calibration data (no false alert was seen there)"
    every = 1 / rate
    rounded = round(every, -len(str(int(every))) + 2) if every >= 100 else round(every)
    return f"about 1 false alert per {max(1, int(rounded)):,} people not on the list who walk past"


def watchlist_fitness(fitness: dict[str, Any]) -> dict[str, Any]:
    """``fitness`` (from :func:`openfrt.gallery.fitness.expected_fitness`) as sentences:
    ``finds``, ``false_alerts`` and ``warnings`` (each a sentence; empty when there is none)."""
    tpir, fpir, target = fitness["tpir"], fitness["fpir"], fitness["target_fpir"]
    warnings = []
    if tpir < MOST_ARE_MISSED:
        warnings.append("Most people on this list who walk past will not be found: no alert is not evidence that "
                        "someone was not there.")
    if fpir > target:
        warnings.append(f"More false alerts than the target ({per_passers_by(target).replace('about ', '')}): raise the "
                        "threshold, shorten the list or use a stronger model.")
    return {
        "finds": f"Finds about {round(tpir * 100)} in 100 people on this list who walk past the camera (TPIR {tpir:.1%}).",
        "false_alerts": f"False alerts: {per_passers_by(fpir)} (FPIR {fpir:.2g}).",
        "warnings": warnings,
    }
