"""The public transparency report: deployment records, a monthly summary and charts of them.

No login: it shows exactly what :mod:`openfrt.api.routes.records` publishes (counts, place,
purpose, outcomes; nothing biometric). Charts are drawn here with matplotlib as SVG, so the
page needs no chart library in the browser and prints as sharply as it displays.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import matplotlib
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from openfrt.api.context import ServerContext
from openfrt.api.routes.records import false_alert_rate, records
from openfrt.api.security import optional_principal
from openfrt.web.rendering import render, server

router = APIRouter(include_in_schema=False)

#: Deployments drawn in the per-deployment chart: the latest ones (the table lists them all).
CHART_DEPLOYMENTS = 24

#: Bars are this wide (of one slot), and fewer bars than this many slots stay narrow and centred.
BAR_WIDTH, MIN_SLOTS = 0.6, 6

#: Colour-blind-safe colours (Okabe–Ito): confirmed match, false alert, other verdicts or pending, faces scanned.
CONFIRMED, FALSE, OTHER, NEUTRAL = "#0072B2", "#D55E00", "#999999", "#009E73"

#: Text size of the charts, in points.
FONT_SIZE = 10

#: Deployment names longer than this are shortened on the chart (the table has them whole).
LABEL_CHARACTERS = 28

#: More labels than this, or any longer than :data:`UPRIGHT_CHARACTERS`, run vertically: slanted
#: or level, neighbours ran into each other.
UPRIGHT_LABELS, UPRIGHT_CHARACTERS = 4, 12

#: Room between the stacked panels (a fraction of a panel's height): without it the lowest
#: tick label of one panel met the highest of the next.
PANEL_SPACE = 0.06

#: At most this many tick labels on a panel's value axis, so they stay apart.
PANEL_TICKS = 4

#: Counts with thousands separators ("120,000").
THOUSANDS = StrMethodFormatter("{x:,.0f}")

#: ``rc_context`` changes matplotlib's global settings while it lasts; one chart at a time.
_drawing = threading.Lock()


@router.get("/transparency")
def transparency(request: Request, ctx: ServerContext = Depends(server)) -> HTMLResponse:
    figures = records(ctx)  # what GET /api/records publishes
    totals = {name: sum(row[name] for row in figures["deployments"])
              for name in ("faces_scanned", "alerts", "true_alerts", "false_alerts", "engagements", "arrests")}
    totals["false_alert_rate"] = false_alert_rate(totals["false_alerts"], totals["faces_scanned"])
    principal = optional_principal(request)
    return render(request, "transparency.html", principal, active="/transparency",
                  title="Transparency report", public=principal is None, deployments=figures["deployments"],
                  months=figures["months"], groups=figures["groups"], totals=totals, chart_limit=CHART_DEPLOYMENTS,
                  now=datetime.now(timezone.utc))


@router.get("/transparency/charts/{name}.svg")
def chart(name: str, ctx: ServerContext = Depends(server)) -> Response:
    figures = records(ctx)
    if name == "deployments":
        rows = figures["deployments"][-CHART_DEPLOYMENTS:]
        svg = draw([row["deployment"] for row in rows], rows, "Deployment")
    elif name == "months":
        svg = draw([row["month"] for row in figures["months"]], figures["months"], "Month")
    elif name == "groups":
        svg = draw_groups(figures["groups"])
    else:
        raise HTTPException(404, f"no chart named {name!r}")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})


def draw(labels: Sequence[str], rows: Sequence[dict[str, Any]], axis: str) -> bytes:
    """Three panels over the same ``labels``: faces scanned, alerts by verdict, false-alert rate."""
    with _drawing:
        return as_svg(rows_figure(labels, rows, axis))


def draw_groups(groups: Sequence[dict[str, Any]]) -> bytes:
    """True and false alerts per perceived group, one horizontal bar each (ethnic groups, then sexes)."""
    with _drawing:
        return as_svg(groups_figure(groups))


def rows_figure(labels: Sequence[str], rows: Sequence[dict[str, Any]], axis: str) -> Figure:
    """The figure :func:`draw` saves. Labels are never drawn over each other: names are shortened
    to :data:`LABEL_CHARACTERS` (the table beside the chart has them whole), more than a few
    run vertically, and the panels keep room between them for their tick labels."""
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        figure = Figure(figsize=(9.0, 6.6), layout="constrained")
        figure.get_layout_engine().set(hspace=PANEL_SPACE)  # type: ignore[union-attr]
        faces, alerts, rates = figure.subplots(3, 1, sharex=True)
        positions = list(range(len(labels)))
        faces.bar(positions, [row["faces_scanned"] for row in rows], width=BAR_WIDTH, color=NEUTRAL)
        faces.set_ylabel("Faces scanned")
        faces.yaxis.set_major_formatter(THOUSANDS)
        confirmed = [row["true_alerts"] for row in rows]
        false = [row["false_alerts"] for row in rows]
        other = [row["alerts"] - row["true_alerts"] - row["false_alerts"] for row in rows]
        alerts.bar(positions, confirmed, width=BAR_WIDTH, color=CONFIRMED, label="confirmed match")
        alerts.bar(positions, false, width=BAR_WIDTH, bottom=confirmed, color=FALSE, label="false alert")
        alerts.bar(positions, other, width=BAR_WIDTH, bottom=[a + b for a, b in zip(confirmed, false)], color=OTHER,
                   label="no further action or pending")
        alerts.set_ylabel("Alerts")
        alerts.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize="small", frameon=False)
        percentages = [100 * (row["false_alert_rate"] or 0.0) for row in rows]
        rates.bar(positions, percentages, width=BAR_WIDTH, color=FALSE)
        # A rate is never negative: keep zero at the bottom even when every rate is zero.
        rates.set_ylim(0, max(percentages, default=0.0) * 1.15 or 0.01)
        rates.set_ylabel("False-alert rate (%)\nper face scanned")
        rates.set_xlabel(axis)
        shown = [shorten(label) for label in labels]
        if len(labels) > UPRIGHT_LABELS or max(map(len, shown), default=0) > UPRIGHT_CHARACTERS:
            rates.set_xticks(positions, shown, rotation=90)
        else:
            rates.set_xticks(positions, shown)
        # Few bars keep their width instead of filling the plot.
        margin = max(0.0, (MIN_SLOTS - len(labels)) / 2)
        rates.set_xlim(-0.5 - margin, len(labels) - 0.5 + margin)
        for axes in (faces, alerts, rates):
            axes.spines[["top", "right"]].set_visible(False)
            axes.yaxis.get_major_locator().set_params(nbins=PANEL_TICKS)
        for axes in (faces, alerts):
            axes.yaxis.get_major_locator().set_params(integer=True)
        if not labels:
            faces.set_title("No deployment has started yet.")
        return figure


def groups_figure(groups: Sequence[dict[str, Any]]) -> Figure:
    """The figure :func:`draw_groups` saves."""
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        figure = Figure(figsize=(9.0, 0.9 + 0.38 * max(len(groups), 2)), layout="constrained")
        axes = figure.subplots()
        positions = list(range(len(groups)))
        true = [group["true_alerts"] for group in groups]
        axes.barh(positions, true, height=BAR_WIDTH, color=CONFIRMED, label="confirmed match")
        axes.barh(positions, [group["false_alerts"] for group in groups], height=BAR_WIDTH, left=true, color=FALSE,
                  label="false alert")
        names = [f"{'ethnic group' if group['dimension'] == 'ethnicity' else group['dimension']}: {group['group']}" for group in groups]
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.set_xlabel("Adjudicated alerts")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.spines[["top", "right"]].set_visible(False)
        axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, fontsize="small", frameon=False)
        return figure


def as_svg(figure: Figure) -> bytes:
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        out = io.BytesIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
        return out.getvalue()


def shorten(label: str) -> str:
    return label if len(label) <= LABEL_CHARACTERS else label[: LABEL_CHARACTERS - 1] + "…"
