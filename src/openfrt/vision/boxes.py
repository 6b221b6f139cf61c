"""Geometry of ``(x, y, w, h)`` face boxes, shared by tracking and detector evaluation."""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when they do not touch)."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def count_matches(found: Sequence[Sequence[float]], reference: Sequence[Sequence[float]], min_iou: float = 0.3) -> int:
    """How many ``reference`` boxes a ``found`` box matches one-to-one with IoU >= ``min_iou``.

    Greedy, best overlap first: how detector recall is counted against a yardstick detector.
    """
    pairs = sorted(((iou(f, r), i, j) for i, f in enumerate(found) for j, r in enumerate(reference)), reverse=True)
    used_found: set[int] = set()
    used_reference: set[int] = set()
    for overlap, i, j in pairs:
        if overlap >= min_iou and i not in used_found and j not in used_reference:
            used_found.add(i)
            used_reference.add(j)
    return len(used_reference)
