"""The transparency report's charts: no label is drawn over another, however many deployments
there are and however long their names, and every label stays inside the picture."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from openfrt.web.transparency import as_svg, groups_figure, rows_figure


def drawn_labels(figure: Figure) -> list[tuple[str, Bbox]]:
    """Every piece of text the figure draws, with its box in pixels: tick labels within the axes'
    limits, axis labels, titles and legend entries."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts: list[Text] = []
    for axes in figure.axes:
        for axis, limits in ((axes.xaxis, axes.get_xlim()), (axes.yaxis, axes.get_ylim())):
            low, high = sorted(limits)
            texts += [tick.label1 for tick in axis.get_major_ticks() if low - 1e-9 <= tick.get_loc() <= high + 1e-9]
        texts += [axes.xaxis.label, axes.yaxis.label, axes.title, *(axes.get_legend().get_texts() if axes.get_legend() else [])]
    return [(text.get_text(), text.get_window_extent(renderer)) for text in texts if text.get_visible() and text.get_text().strip()]


def assert_readable(figure: Figure) -> None:
    labels = drawn_labels(figure)
    overlapping = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(labels, 2) if box_a.overlaps(box_b)]
    assert overlapping == []
    outside = [text for text, box in labels if not (figure.bbox.x0 - 1 <= box.x0 and box.x1 <= figure.bbox.x1 + 1
                                                   and figure.bbox.y0 - 1 <= box.y0 and box.y1 <= figure.bbox.y1 + 1)]
    assert outside == []


def deployments(count: int, name: str) -> list[dict[str, Any]]:
    return [{"deployment": f"{name}-{number}", "faces_scanned": 1000 * (number + 1) ** 3, "alerts": 5, "true_alerts": 2,
             "false_alerts": 1, "false_alert_rate": 0.001} for number in range(count)]


@pytest.mark.parametrize(("count", "name"), [(0, "d"), (1, "d"), (4, "dep"), (3, "high-street-north-entrance"),
                                             (6, "high-street-north-entrance-by-the-old-market"), (24, "dep"), (24, "high-street-north")])
def test_deployment_charts_never_draw_a_label_over_another(count: int, name: str) -> None:
    rows = deployments(count, name)
    figure = rows_figure([row["deployment"] for row in rows], rows, "Deployment")
    assert_readable(figure)
    assert b"<svg" in as_svg(figure)


def test_monthly_and_group_charts_never_draw_a_label_over_another() -> None:
    months = [{"month": f"2026-{m:02d}", "faces_scanned": 10 ** m, "alerts": 3, "true_alerts": 1, "false_alerts": 1,
               "false_alert_rate": 0.0001} for m in range(1, 13)]
    assert_readable(rows_figure([month["month"] for month in months], months, "Month"))
    groups = [{"dimension": "ethnicity", "group": group, "true_alerts": 1, "false_alerts": 2} for group in ("asian", "black", "mixed", "white", "other")]
    groups += [{"dimension": "sex", "group": group, "true_alerts": 3, "false_alerts": 1} for group in ("female", "male")]
    assert_readable(groups_figure(groups))
    assert_readable(groups_figure(groups[:1]))
