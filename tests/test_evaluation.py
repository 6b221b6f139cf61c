"""Open-set evaluation: metrics on synthetic scores with known answers, the loader, the protocol,
the shipped calibration, and a small real ``openfrt evaluate`` run on ../shared."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, need

from openfrt.evaluation import calibration
from openfrt.evaluation.calibration import (
    Calibration,
    CalibrationTable,
    calibration_from_dict,
    calibration_to_dict,
)
from openfrt.evaluation.dataset import (
    Embeddings,
    Sample,
    age_band,
    load_identity_folder,
    load_nonmated_folder,
    subject_face,
)
from openfrt.evaluation.metrics import (
    ExponentialTail,
    SearchOutcomes,
    choose_threshold,
    det_points,
    empirical_threshold,
    fpir_estimate,
    group_rates,
    search_outcomes,
    two_proportion_p_value,
    wilson_interval,
)
from openfrt.evaluation.label_errors import exclusion_lines, suspected_label_errors, without_suspects
from openfrt.evaluation.protocol import Protocol, split
from openfrt.evaluation.report import EvaluationData, calibration_grid, run
from openfrt.evaluation.scoring import (
    CohortStats,
    QualityBar,
    probe_tnorm,
    subject_scores,
)
from openfrt.vision import Face, FaceEngine, Quality

# --- metrics -------------------------------------------------------------------------------


def test_search_outcomes_counts_only_rank1_hits() -> None:
    scores = np.array(
        [
            [0.9, 0.5, 0.4],  # mated to 0, ranked first
            [0.7, 0.8, 0.1],  # mated to 0, someone else ranked first
            [0.6, 0.6, 0.2],  # mated to 1, tied at the top: not a clear hit
            [0.3, 0.95, 0.2],  # non-mated
        ]
    )
    outcome = search_outcomes(scores, np.array([0, 0, 1, -1]))
    assert outcome[0] == pytest.approx(0.9)
    assert outcome[1] == -np.inf and outcome[2] == -np.inf
    assert outcome[3] == pytest.approx(0.95)


def test_tpir_and_fpir_at_thresholds() -> None:
    outcomes = SearchOutcomes(mated=np.array([0.9, 0.8, 0.7, -np.inf]), nonmated=np.array([0.1, 0.2, 0.75, 0.85]))
    assert outcomes.tpir(0.75) == pytest.approx(0.5)
    assert outcomes.fpir(0.75) == pytest.approx(0.5)
    assert outcomes.fpir(0.86) == 0.0
    assert outcomes.rank1 == pytest.approx(0.75)
    assert np.allclose(outcomes.tpir(np.array([0.0, 0.85, 1.0])), [0.75, 0.25, 0.0])


def test_empirical_threshold_allows_floor_of_target_alerts() -> None:
    nonmated = np.linspace(0.0, 0.999, 1000)
    # 1/100 of 1000 searches: 10 may alert, so the 11th highest score must fall below the threshold.
    t = empirical_threshold(nonmated, 0.01)
    assert np.sum(nonmated >= t) == 10
    # Target below 1/M: no alert allowed, the threshold sits just above the highest score.
    t = empirical_threshold(nonmated, 1e-5)
    assert np.sum(nonmated >= t) == 0 and t - nonmated.max() < 1e-9


def test_exponential_tail_recovers_a_known_tail() -> None:
    rng = np.random.default_rng(0)
    nonmated = rng.exponential(0.01, 100_000)  # FPIR(T) = exp(-T / 0.01)
    tail = ExponentialTail.fit(nonmated)
    assert tail is not None
    target = 1e-6  # ten times below what 100,000 searches can resolve
    assert tail.threshold(target) == pytest.approx(-0.01 * math.log(target), rel=0.05)
    estimate = fpir_estimate(nonmated, np.array([0.0, 0.2]))
    assert estimate[0] == pytest.approx(1.0) and estimate[1] == pytest.approx(math.exp(-20), rel=0.5)


def test_choose_threshold_takes_the_more_cautious_estimate() -> None:
    rng = np.random.default_rng(1)
    outcomes = SearchOutcomes(mated=rng.uniform(0.5, 1.0, 500), nonmated=rng.exponential(0.01, 5000))
    choice = choose_threshold(outcomes, 1 / 60_000)  # far below 1/5000: only the tail fit can see it
    assert choice.method == "exponential tail fit"
    assert choice.threshold >= choice.empirical_threshold
    assert choice.false_alerts == 0 and choice.fpir_ci[0] == 0.0
    assert choice.tpir == pytest.approx(np.mean(outcomes.mated >= choice.threshold))


def test_det_points_are_exact_at_observed_scores() -> None:
    outcomes = SearchOutcomes(mated=np.array([0.9, 0.6, -np.inf]), nonmated=np.array([0.7, 0.5]))
    thresholds, fpir, fnir = det_points(outcomes)
    assert thresholds.tolist() == [0.5, 0.6, 0.7, 0.9]
    assert fpir.tolist() == [1.0, 0.5, 0.5, 0.0]
    assert fnir == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(0, 100)
    assert low == 0.0 and high == pytest.approx(0.0370, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_two_proportion_test_and_group_flags() -> None:
    assert two_proportion_p_value(50, 100, 50, 100) == pytest.approx(1.0)
    assert two_proportion_p_value(30, 100, 10, 100) < 0.001
    hits = np.array([1] * 40 + [0] * 60 + [1] * 20 + [0] * 80 + [1] * 21 + [0] * 79, dtype=bool)
    groups = np.array(["a"] * 100 + ["b"] * 100 + ["c"] * 100)
    rates = {r.group: r for r in group_rates(hits, groups, "race")}
    assert rates["a"].significant and rates["a"].rate == pytest.approx(0.4)
    # b (20% vs 30.5% for the rest) has p about 0.05: not significant once corrected for 3 tests.
    assert 0.0167 < rates["b"].p_value < 0.1 and not rates["b"].significant
    assert not rates["c"].significant
    assert rates["b"].ci[0] < 0.2 < rates["b"].ci[1]


def test_group_rates_skip_unknown_labels() -> None:
    rates = group_rates(np.array([True, False, True]), np.array(["x", "", "y"]), "gender")
    assert [r.group for r in rates] == ["x", "y"]


# --- scoring -------------------------------------------------------------------------------


def _unit_rows(rows: list[list[float]]) -> np.ndarray:
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_subject_scores_fusions() -> None:
    probes = _unit_rows([[1, 0]])
    references = [_unit_rows([[1, 0], [0, 1]]), _unit_rows([[0, 1]])]
    assert subject_scores(probes, references, "max")[0] == pytest.approx([1.0, 0.5])
    assert subject_scores(probes, references, "mean")[0] == pytest.approx([0.75, 0.5])
    assert subject_scores(probes, references, "mean-template")[0, 0] == pytest.approx((1 + math.sqrt(0.5)) / 2)


def test_tnorm_and_quality_bar() -> None:
    scores = np.array([[0.9, 0.7]])
    assert probe_tnorm(scores, CohortStats(np.array([0.7]), np.array([0.1])))[0] == pytest.approx([2.0, 0.0])
    bar = QualityBar(min_face_height_px=40, min_sharpness=10)
    assert bar.accepts(np.array([50, 30, 50]), np.array([20, 20, 5]), np.array([1, 1, 1])).tolist() == [True, False, False]


# --- loader and protocol -------------------------------------------------------------------


def _touch_images(paths: list[Path]) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded by the loader")


def test_loaders_read_folders_and_labels(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    _touch_images([ids / "Ann" / "a1.jpg", ids / "Ann" / "a2.png", ids / "Bob" / "b1.jpg"])
    (ids / "Bob" / "notes.txt").write_text("ignored")
    (ids / "labels.csv").write_text("file,identity,gender,race\nAnn/a1.jpg,Ann,female,\nBob/b1.jpg,Bob,male,black\n")
    samples = load_identity_folder(ids)
    assert [(s.path.name, s.identity) for s in samples] == [("a1.jpg", "Ann"), ("a2.png", "Ann"), ("b1.jpg", "Bob")]
    assert samples[0].labels == {"gender": "female", "race": ""}
    assert samples[1].labels == {} and samples[2].labels["race"] == "black"

    passers = tmp_path / "passers"
    _touch_images([passers / "x.jpg", passers / "y.jpg"])
    (passers / "labels.csv").write_text("file,age,gender,race\nx.jpg,34,female,Asian\ny.jpg,70,male,White\n")
    nonmated = load_nonmated_folder(passers)
    assert len({s.identity for s in nonmated}) == 2
    assert [s.labels["age_band"] for s in nonmated] == ["30-44", "60+"]


def _face(x: float, y: float, size: float) -> Face:
    quality = Quality(size, 100.0, 1.0, 0.0, 0.0, 0.5)
    return Face((x, y, size, size), 0.9, np.zeros((5, 2), np.float32), quality, "test")


def test_subject_face_is_the_central_one_of_the_larger_faces() -> None:
    shape = (250, 250, 3)
    subject, bystander = _face(85, 85, 80), _face(0, 0, 100)  # LFW: the subject is centred
    assert subject_face([bystander, subject], shape) is subject
    tiny_at_centre = _face(120, 120, 10)  # a background face, however central, does not win
    assert subject_face([bystander, tiny_at_centre], shape) is bystander


def test_age_bands() -> None:
    assert [age_band(a) for a in ("0", "17", "18", "29", "30", "59", "60", "101", "n/a")] == [
        "0-17", "0-17", "18-29", "18-29", "30-44", "45-59", "60+", "60+", ""
    ]


def test_split_follows_the_protocol() -> None:
    # Three people with 3 images, four with 1; row 2 has no face; rows 13-15 are non-mated images.
    identities = ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D", "E", "F", "G"]
    usable = np.ones(len(identities), dtype=bool)
    usable[2] = False
    nonmated_rows = np.array([13, 14, 15])
    result = split(identities, usable, nonmated_rows, Protocol(watchlist_size=5, cohort_size=1, seed=3))
    assert len(result.subjects) == 5 and {"A", "B", "C"} <= set(result.subjects)
    assert all(len(r) == 1 for r in result.references)
    assert result.mated.size == 1 + 2 + 2  # A lost one image to no face
    assert 2 not in result.mated and result.cohort.size == 1
    enrolled_rows = {int(r[0]) for r in result.references}
    every = set(result.mated) | set(result.nonmated) | enrolled_rows | set(result.cohort)
    assert every == set(range(16)) - {2}  # each usable row has exactly one role
    assert len(result.mated) + len(result.nonmated) + len(enrolled_rows) + len(result.cohort) == 15
    again = split(identities, usable, nonmated_rows, Protocol(watchlist_size=5, cohort_size=1, seed=3))
    assert again.subjects == result.subjects and np.array_equal(again.mated, result.mated)


def test_multi_image_enrolment_keeps_the_same_probes() -> None:
    identities = ["A"] * 5 + ["B"] * 2
    usable = np.ones(7, dtype=bool)
    one = split(identities, usable, np.array([], dtype=int), Protocol(watchlist_size=2, enrol_images=1, reference_pool=3))
    three = split(identities, usable, np.array([], dtype=int), Protocol(watchlist_size=2, enrol_images=3, reference_pool=3))
    assert np.array_equal(one.mated, three.mated)
    assert [len(r) for r in three.references] == [3, 1]  # B keeps one image to search with


def test_smaller_watchlist_turns_unenrolled_subjects_into_nonmated() -> None:
    identities = ["A", "A", "B", "B", "C", "C"]
    result = split(identities, np.ones(6, dtype=bool), np.array([], dtype=int), Protocol(watchlist_size=1))
    assert len(result.subjects) == 1 and result.mated.size == 1 and result.nonmated.size == 4


# --- calibration ---------------------------------------------------------------------------


def _toy_calibration(reference_images: int = 1, default_threshold: float = 0.95) -> Calibration:
    rows = (0.9, 0.95, 0.99)
    return Calibration(
        model_id="toy@1",
        reference_images=reference_images,
        default_threshold=default_threshold,
        target_fpir=1e-3,
        tables=(
            CalibrationTable(100, rows, (0.9, 0.7, 0.3), (1e-2, 1e-4, 1e-6)),
            CalibrationTable(1000, rows, (0.85, 0.65, 0.25), (1e-1, 1e-3, 1e-5)),
        ),
        source={},
    )


def test_calibration_round_trips_through_json() -> None:
    toy = _toy_calibration(reference_images=3)
    again = calibration_from_dict(json.loads(json.dumps(calibration_to_dict(toy))))
    assert again.tables[1].fpir == toy.tables[1].fpir and again.default_threshold == 0.95
    assert again.reference_images == 3


@pytest.fixture
def toy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ship a toy model measured with one and with three reference images."""
    measured = (_toy_calibration(1, 0.95), _toy_calibration(3, 0.97))
    monkeypatch.setattr(calibration, "shipped_calibrations", lambda: {"toy@1": measured})


def test_threshold_follows_the_number_of_reference_images(toy_model: None) -> None:
    assert calibration.default_watchlist_threshold("toy@1") == 0.95
    assert calibration.default_watchlist_threshold("toy@1", reference_images=2) == 0.97  # tie: the higher
    assert calibration.default_watchlist_threshold("toy@1", reference_images=10) == 0.97


def test_expected_performance_is_monotonic(toy_model: None) -> None:
    thresholds = np.linspace(0.85, 1.0, 31)
    fits = [calibration.expected_performance("toy@1", float(t), 1000) for t in thresholds]
    assert all(a.tpir >= b.tpir and a.fpir >= b.fpir for a, b in itertools.pairwise(fits))
    sizes = [calibration.expected_performance("toy@1", 0.95, n) for n in (10, 100, 300, 1000, 10_000)]
    assert all(a.fpir <= b.fpir for a, b in itertools.pairwise(sizes))
    assert all(a.tpir >= b.tpir for a, b in itertools.pairwise(sizes))
    # Measured sizes are reproduced; a ten times larger watchlist gives about ten times the FPIR.
    assert calibration.expected_performance("toy@1", 0.99, 1000).fpir == pytest.approx(1e-5, rel=1e-3)
    assert calibration.expected_performance("toy@1", 0.99, 10_000).fpir == pytest.approx(1e-4, rel=0.01)
    fit = calibration.expected_performance("toy@1", 0.99, 1000)
    assert fit.meets_target and "toy@1" in fit.message
    assert not calibration.expected_performance("toy@1", 0.9, 1000).meets_target


def test_uncalibrated_model_gives_none() -> None:
    assert calibration.expected_performance("no-such-model@0", 0.9, 100) is None
    assert calibration.default_watchlist_threshold("no-such-model@0") is None


@pytest.mark.parametrize("model", ["dlib-resnet@v1", "sface@2021dec"])
@pytest.mark.parametrize("reference_images", [1, 3])
def test_shipped_calibrations_meet_their_own_target(model: str, reference_images: int) -> None:
    threshold = calibration.default_watchlist_threshold(model, reference_images)
    assert threshold is not None and 0.5 < threshold < 1.0
    fit = calibration.expected_performance(model, threshold, 1000, reference_images=reference_images)
    assert fit is not None and fit.meets_target and 0.0 < fit.tpir < 1.0
    assert not calibration.expected_performance(model, threshold - 0.01, 1000, reference_images=reference_images).meets_target


def test_the_default_model_is_calibrated() -> None:
    assert calibration.calibration_for(FaceEngine().embedder.model_id) is not None


# --- end to end ----------------------------------------------------------------------------


def _link_subset(tmp_path: Path) -> tuple[Path, Path]:
    """A few LFW identities with several images and a few UTK images, with their labels."""
    lfw, utk = need(SHARED / "faces" / "lfw"), need(SHARED / "faces" / "utk")
    ids, passers = tmp_path / "ids", tmp_path / "passers"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3)[:4]
    lines = ["file,identity,gender,race"]
    for person in people:
        for image in sorted(person.glob("*.jpg"))[:3]:
            (ids / person.name).mkdir(parents=True, exist_ok=True)
            (ids / person.name / image.name).symlink_to(image)
            lines.append(f"{person.name}/{image.name},{person.name},male,")
    (ids / "labels.csv").write_text("\n".join(lines) + "\n")
    passers.mkdir()
    utk_rows = (utk / "labels.csv").read_text().splitlines()
    for row in utk_rows[1:9]:
        (passers / row.split(",")[0]).symlink_to(utk / row.split(",")[0])
    (passers / "labels.csv").write_text("\n".join(utk_rows[:9]) + "\n")
    return ids, passers


def test_evaluate_command_end_to_end(tmp_path: Path) -> None:
    ids, passers = _link_subset(tmp_path)
    det, exclude = tmp_path / "det.png", tmp_path / "label-errors.txt"
    exclude.write_text("# one non-mated image left out\n" + min(p.name for p in passers.glob("*.jpg")) + "\n")
    command = [
        sys.executable, "-m", "openfrt", "evaluate", "--identities", str(ids), "--nonmated", str(passers),
        "--watchlist-size", "10", "--target-fpir", "1/20", "--det", str(det), "--exclude", str(exclude), "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model"] == FaceEngine().embedder.model_id
    assert report["watchlist_size"] == 4  # every identity has mated probes; nobody to pad with
    assert report["mated_searches"] + report["no_face"]["identities"] == 8
    assert report["excluded"] == 1
    assert report["nonmated_searches"] + report["no_face"]["nonmated"] == 7
    assert 0.0 <= report["tpir"] <= 1.0 and report["threshold"]["target_fpir"] == pytest.approx(0.05)
    assert det.stat().st_size > 1000
    assert set(report["label_errors"]) == {"suspected", "without_suspected"}


# --- suspected label errors ----------------------------------------------------------------


def _synthetic_data(label_errors: int, seed: int = 0) -> EvaluationData:
    """300 people with two photos each (mated cosine ~0.8) and 4,000 passers-by, ``label_errors``
    of whom are in fact enrolled people (a noisy copy of their first photo)."""
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    people = unit(rng.normal(size=(300, 64)))
    photos = unit(np.repeat(people, 2, axis=0) + rng.normal(scale=0.06, size=(600, 64)))
    passers = unit(rng.normal(size=(4000, 64)))
    for k in range(label_errors):
        passers[k] = unit(photos[2 * k] + rng.normal(scale=0.06, size=64))
    samples = [Sample(Path(f"/lfw/p{i // 2:03d}/p{i // 2:03d}_{i % 2}.jpg"), f"p{i // 2:03d}") for i in range(600)]
    samples += [Sample(Path(f"/utk/passer{j:04d}.jpg"), f"nonmated:passer{j:04d}.jpg") for j in range(4000)]
    vectors = np.concatenate([photos, passers])
    embeddings = Embeddings("toy@1", "none", vectors, np.zeros((len(vectors), 6)), [None] * len(vectors))
    return EvaluationData(samples, 600, embeddings)


def test_label_errors_are_suspected_and_honest_searches_are_not() -> None:
    data = _synthetic_data(label_errors=3)
    result = run(data, Protocol(watchlist_size=300), target_fpir=1 / 4000)
    suspects = suspected_label_errors(data, result)
    # The three passers who are enrolled people are found, with the person they look like; no honest one is.
    # (Each may be mated to either photo: the protocol enrols one of the two at random.)
    assert sorted(s.probe for s in suspects) == ["passer0000.jpg", "passer0001.jpg", "passer0002.jpg"]
    assert sorted(s.candidate for s in suspects) == ["p000", "p001", "p002"]
    assert all(s.score >= s.mated_median for s in suspects)
    cleaned = without_suspects(result, suspects, data)
    assert cleaned.searches == result.choice.searches - 3
    assert cleaned.threshold < result.choice.threshold and cleaned.tpir > result.choice.tpir
    listed = exclusion_lines(suspects)
    assert "# passer0000.jpg    # score" in listed and listed.count("\n# ") >= 3


def test_no_label_errors_no_suspects() -> None:
    data = _synthetic_data(label_errors=0, seed=1)
    assert suspected_label_errors(data, run(data, Protocol(watchlist_size=300), target_fpir=1 / 4000)) == []


def test_calibration_grid_follows_where_a_model_places_its_scores() -> None:
    dlib_like, sface_like = np.full(1000, 0.93), np.full(1000, 0.553)
    assert calibration_grid(dlib_like)[0] == pytest.approx(0.90)
    assert calibration_grid(sface_like)[0] == pytest.approx(0.5525) and calibration_grid(sface_like)[-1] < 1.0


def test_every_shipped_calibration_tabulates_its_own_default_threshold() -> None:
    # A default outside its table would be reported with the end row's figures: not what it does.
    for model, calibrations in calibration.shipped_calibrations().items():
        for measured in calibrations:
            for table in measured.tables:
                assert table.thresholds[0] <= measured.default_threshold <= table.thresholds[-1], (model, table.watchlist_size)
