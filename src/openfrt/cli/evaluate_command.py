"""``openfrt evaluate``: measure open-set (1:N) accuracy and its demographic spread on labelled folders."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from openfrt.cli.common import (
    DetectorModelOption,
    DetectorOption,
    EmbedderOption,
    JsonOption,
    MaxPixelsOption,
    ThreadsOption,
    build_engine,
    console,
    print_json,
    usage_error,
)
from openfrt.errors import OpenFRTError
from openfrt.evaluation.calibration import DEFAULT_WATCHLIST_SIZE
from openfrt.evaluation.choices import Fusion, Normalisation

if TYPE_CHECKING:
    from openfrt.evaluation.label_errors import SuspectedLabelError
    from openfrt.evaluation.metrics import GroupRate, ThresholdChoice
    from openfrt.evaluation.report import EvaluationData, OpenSetResult

#: FPIRs at which the sweep table shows the threshold and TPIR (model-agnostic, unlike fixed thresholds).
SWEEP_FPIRS = (0.1, 0.03, 0.01, 0.003, 0.001)


def parse_rate(text: str) -> float:
    """A rate given as ``1/6000``, ``0.000167`` or ``1.67e-4``; must lie in (0, 1)."""
    try:
        value = float(Fraction(text.strip().replace(" ", ""))) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{text!r} is not a rate: write it as 1/6000 or 0.000167") from None
    if not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{text!r} must be between 0 and 1")
    return value


def evaluate(
    identities: Annotated[Path, typer.Option("--identities", help="Folder with one sub-folder of images per identity (+ optional labels.csv).", exists=True, file_okay=False)],
    nonmated: Annotated[Path, typer.Option("--nonmated", help="Folder of images of people never enrolled (+ optional labels.csv).", exists=True, file_okay=False)],
    target_fpir: Annotated[str, typer.Option("--target-fpir", help="Target false-positive identification rate per search, e.g. 1/6000.")] = "1/6000",
    watchlist_size: Annotated[int, typer.Option("--watchlist-size", min=1, help="Watchlist subjects (padded with never-searched identities).")] = DEFAULT_WATCHLIST_SIZE,
    threshold: Annotated[float | None, typer.Option("--threshold", min=0.0, help="Measure at this threshold instead of choosing one for the target (e.g. a shipped default).")] = None,
    enrol_images: Annotated[int, typer.Option("--enrol-images", min=1, help="Reference images enrolled per subject (where a subject has more than that).")] = 1,
    fusion: Annotated[Fusion, typer.Option("--fusion", help="How several reference images' scores combine.")] = "mean-template",
    normalise: Annotated[Normalisation, typer.Option("--normalise", help="Score normalisation against a cohort of non-mated faces.")] = "none",
    cohort_size: Annotated[int, typer.Option("--cohort-size", min=0, help="Identities set aside as the normalisation cohort (0: use the watchlist).")] = 0,
    min_face_height: Annotated[float, typer.Option("--min-face-height", min=0, help="Refuse probes with a smaller face (px).")] = 0.0,
    min_sharpness: Annotated[float, typer.Option("--min-sharpness", min=0, help="Refuse probes less sharp than this.")] = 0.0,
    min_frontalness: Annotated[float, typer.Option("--min-frontalness", min=0, max=1, help="Refuse probes less frontal than this.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the enrolment and watchlist choice.")] = 0,
    det: Annotated[Path | None, typer.Option("--det", help="Write a DET curve (PNG) here.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Embedding worker processes.")] = 2,
    cache: Annotated[Path | None, typer.Option("--cache", help="Keep templates in this folder between runs.", file_okay=False)] = None,
    exclude: Annotated[Path | None, typer.Option("--exclude", help="File listing images with known label errors (folder-relative paths), left out.", exists=True, dir_okay=False)] = None,
    write_calibration: Annotated[Path | None, typer.Option("--write-calibration", help="Also write a calibration JSON (tables for several watchlist sizes) here.")] = None,
    suspects_file: Annotated[Path | None, typer.Option("--suspects", help="Write the suspected label errors here, as a commented --exclude file to review.", dir_okay=False)] = None,
    json_output: JsonOption = False,
    detector: DetectorOption = None,
    detector_model: DetectorModelOption = None,
    embedder: EmbedderOption = None,
    max_pixels: MaxPixelsOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Open-set search accuracy: TPIR/FNIR/FPIR, the threshold for a target FPIR, and per-group rates.

    One image per identity is enrolled; the rest search as mated probes. The non-mated folder,
    plus identities left off the watchlist, search as non-mated probes. See docs/evaluation.md.
    """
    from openfrt.evaluation.calibration import calibration_file
    from openfrt.evaluation.label_errors import exclusion_lines, suspected_label_errors, without_suspects
    from openfrt.evaluation.plots import plot_det
    from openfrt.evaluation.protocol import Protocol
    from openfrt.evaluation.report import (
        CALIBRATION_REFERENCES,
        CALIBRATION_SIZES,
        Scoring,
        build_calibration,
        load_data,
        read_exclusions,
        run,
    )
    from openfrt.evaluation.scoring import QualityBar

    target = parse_rate(target_fpir)
    engine = build_engine(detector, detector_model, embedder, max_pixels, threads=threads)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    try:
        excluded = read_exclusions(exclude) if exclude else frozenset()
        data = load_data(identities, nonmated, engine.config, workers, cache, excluded)
        protocol = Protocol(watchlist_size, enrol_images, enrol_images, cohort_size, seed)
        bar = QualityBar(min_face_height, min_sharpness, min_frontalness)
        scoring = Scoring(fusion, normalise, "split" if cohort_size else "watchlist", bar if bar != QualityBar() else None)
        result = run(data, protocol, scoring, target, threshold=threshold)
    except (OpenFRTError, ValueError) as exc:
        usage_error(str(exc))
    if det:
        title = f"{data.embeddings.model_id} ({data.embeddings.detector}), watchlist {len(result.split.subjects):,}"
        plot_det({scoring.describe(): result.outcomes}, det, target, title)
    if write_calibration:
        calibrations = [
            build_calibration(data, CALIBRATION_SIZES, watchlist_size, target, seed, reference_images=k)
            for k in CALIBRATION_REFERENCES
        ]
        write_calibration.write_text(json.dumps(calibration_file(calibrations), indent=1) + "\n", encoding="utf-8")
    shipped = _shipped_default(data, result, enrol_images)
    suspects = suspected_label_errors(data, result)
    cleaned = without_suspects(result, suspects, data)
    if suspects_file:
        suspects_file.write_text(exclusion_lines(suspects), encoding="utf-8")
    if json_output:
        print_json({**_payload(data, result), "shipped_default": shipped, "label_errors": _label_errors_json(suspects, cleaned)})
    else:
        _print_report(data, result)
        _print_label_errors(result, suspects, cleaned, suspects_file)
        if shipped:
            console.print(
                f"Shipped default threshold for {data.embeddings.model_id} ({enrol_images} reference image(s)): "
                f"{shipped['threshold']:.4f} -> here TPIR {shipped['tpir']:.1%}, FPIR {shipped['fpir']:.2g} "
                f"({shipped['false_alerts']} false alerts)"
            )


def _label_errors_json(suspects: list[SuspectedLabelError], cleaned: ThresholdChoice) -> dict:
    return {
        "suspected": [suspect.as_dict() for suspect in suspects],
        "without_suspected": {"threshold": round(cleaned.threshold, 6), "method": cleaned.method, "tpir": round(cleaned.tpir, 5),
                              "fpir": cleaned.fpir, "false_alerts": cleaned.false_alerts, "searches": cleaned.searches},
    }


def _print_label_errors(result: OpenSetResult, suspects: list[SuspectedLabelError], cleaned: ThresholdChoice, written: Path | None) -> None:
    """The suspects, for a person to review, and what the figures would be without them."""
    if not suspects:
        console.print("No suspected label errors: no non-mated search scored like the same person.")
        return
    table = Table(title=f"Suspected label errors: {len(suspects)} non-mated searches scoring at least the median mated score "
                        f"({suspects[0].mated_median:.4f}); review by eye", title_justify="left")
    for column in ("probe", "looks like", "candidate's reference", "score"):
        table.add_column(column, overflow="fold", justify="right" if column == "score" else "left")
    for suspect in suspects:
        table.add_row(suspect.probe, suspect.candidate, suspect.candidate_reference, f"{suspect.score:.4f}")
    console.print(table)
    c = result.choice
    console.print(
        f"With them: threshold {c.threshold:.4f}, TPIR {c.tpir:.1%}. Without them (if they are label errors): threshold "
        f"{cleaned.threshold:.4f}, TPIR {cleaned.tpir:.1%}, FPIR {cleaned.fpir:.2g} ({cleaned.false_alerts} / {cleaned.searches:,})."
        + (f" Review list written to {written}; confirmed lines go to --exclude." if written else " Write them for review with --suspects FILE.")
    )


def _shipped_default(data: EvaluationData, result: OpenSetResult, reference_images: int) -> dict | None:
    """How the shipped default threshold of this model performs on this data (None if uncalibrated)."""
    import numpy as np

    from openfrt.evaluation.calibration import default_watchlist_threshold

    threshold = default_watchlist_threshold(data.embeddings.model_id, reference_images)
    if threshold is None:
        return None
    outcomes = result.outcomes
    return {
        "threshold": threshold,
        "tpir": round(float(outcomes.tpir(threshold)), 5),
        "fpir": float(outcomes.fpir(threshold)),
        "false_alerts": int(np.sum(outcomes.nonmated >= threshold)),
    }


def _sweep(result: OpenSetResult) -> list[dict[str, float]]:
    """Empirical threshold and TPIR at each of :data:`SWEEP_FPIRS`."""
    from openfrt.evaluation.metrics import empirical_threshold

    rows = []
    for fpir in SWEEP_FPIRS:
        threshold = empirical_threshold(result.outcomes.nonmated, fpir)
        rows.append({"target_fpir": fpir, "threshold": round(threshold, 6), "tpir": round(float(result.outcomes.tpir(threshold)), 5),
                     "fpir": round(float(result.outcomes.fpir(threshold)), 6)})
    return rows


def _payload(data: EvaluationData, result: OpenSetResult) -> dict:
    return {
        "model": data.embeddings.model_id,
        "detector": data.embeddings.detector,
        "images": {"identities": data.identity_count, "nonmated": len(data.samples) - data.identity_count},
        "no_face": data.no_face(),
        "no_face_reasons": data.no_face_reasons(),
        "excluded": data.excluded,
        **result.as_dict(),
        "sweep": _sweep(result),
    }


def _print_report(data: EvaluationData, result: OpenSetResult) -> None:
    c, counts = result.choice, data.no_face()
    console.print(
        f"[bold]{data.embeddings.model_id}[/bold] with detector {data.embeddings.detector}: "
        f"{data.identity_count:,} identity-folder images ({counts['identities']} without a face), "
        f"{len(data.samples) - data.identity_count:,} non-mated images ({counts['nonmated']} without a face); "
        f"{data.excluded} listed as label errors and left out"
    )
    console.print(
        f"watchlist {len(result.split.subjects):,} subjects ({result.split.mated_subjects:,} with mated probes); "
        f"{result.outcomes.mated.size:,} mated and {result.outcomes.nonmated.size:,} non-mated searches; "
        f"rank-1 identification {result.outcomes.rank1:.1%}"
    )
    summary = Table(title=f"Threshold for FPIR <= {c.target_fpir:.3g} (1 in {1 / c.target_fpir:,.0f})", title_justify="left")
    for column in ("threshold", "chosen by", "TPIR (95% CI)", "FNIR", "FPIR (95% CI)", "false alerts"):
        summary.add_column(column, justify="right", overflow="fold")
    summary.add_row(
        f"{c.threshold:.4f}", c.method, f"{c.tpir:.1%} ({c.tpir_ci[0]:.1%}-{c.tpir_ci[1]:.1%})", f"{1 - c.tpir:.1%}",
        f"{c.fpir:.2g} ({c.fpir_ci[0]:.2g}-{c.fpir_ci[1]:.2g})", f"{c.false_alerts} / {c.searches:,}",
    )
    console.print(summary)
    tail = "n/a" if c.tail_threshold is None else f"{c.tail_threshold:.4f}"
    console.print(
        f"[dim]{c.searches:,} non-mated searches resolve FPIR only down to 1/{c.searches:,} = {c.resolution:.2g}; "
        f"empirical threshold {c.empirical_threshold:.4f}, exponential-tail extrapolation {tail}; the higher is used.[/dim]"
    )
    sweep = Table(title="At other false-alert rates (empirical thresholds)", title_justify="left")
    for column in ("FPIR at most", "threshold", "TPIR", "FNIR", "FPIR measured"):
        sweep.add_column(column, justify="right")
    for row in _sweep(result):
        sweep.add_row(f"{row['target_fpir']:g}", f"{row['threshold']:.4f}", f"{row['tpir']:.1%}", f"{1 - row['tpir']:.1%}", f"{row['fpir']:.3g}")
    console.print(sweep)
    for breakdown in result.groups:
        where = f"at threshold {breakdown.threshold:.4f} ({breakdown.label})"
        _print_groups(breakdown.tpir, f"TPIR per group (mated searches) {where}")
        _print_groups(breakdown.fpir, f"FPIR per group (non-mated searches) {where}")
    console.print("[dim]* differs from the rest of its column (two-proportion test, Bonferroni-corrected over the column's groups, alpha 0.05).[/dim]")


def _print_groups(rates: list[GroupRate], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("column", "group", "searches", "events", "rate", "95% CI", "p vs rest", ""):
        table.add_column(column, justify="right", overflow="fold")
    for g in rates:
        table.add_row(
            g.column, g.group, f"{g.trials:,}", f"{g.successes:,}", f"{g.rate:.3g}",
            f"{g.ci[0]:.3g}-{g.ci[1]:.3g}", f"{g.p_value:.2g}", "[red]*[/red]" if g.significant else "",
        )
    console.print(table)
