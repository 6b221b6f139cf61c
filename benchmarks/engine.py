"""Speed of the face engine: ms per frame for each detector at several widths, ms per face for
each embedder. A script, not a test: timings on a shared machine are noisy, so it reports
medians measured side by side in one run.

    python benchmarks/engine.py                      # every available detector, the embedders
    python benchmarks/engine.py --detectors hog yunet --widths 640 1920 --frames 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from openfrt.errors import OpenFRTError
from openfrt.vision import load_image
from openfrt.vision.detectors import DETECTORS, Detector
from openfrt.vision.embedders import EMBEDDERS, Embedder
from openfrt.vision.embedders.chip import ChipEmbedder
from openfrt.vision.types import Face

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIDEO = SHARED / "video" / "walking_1080p.mp4"
YUNET = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
INTEL = SHARED / "models" / "face-reidentification-retail-0095" / "FP16" / "face-reidentification-retail-0095.xml"
FACES = SHARED / "faces" / "samples"

#: Detectors too slow to run on every frame at every width get fewer repetitions.
SLOW_DETECTORS = {"mmod": 1, "hog": 2}


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` RGB frames spread evenly over the video."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, bgr = capture.read()
        if ok:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def resize_width(rgb: np.ndarray, width: int) -> np.ndarray:
    if rgb.shape[1] == width:
        return rgb
    scale = width / rgb.shape[1]
    return cv2.resize(rgb, (width, round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: lazy model loading and allocation are not part of the steady state
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def build_detectors(names: list[str]) -> dict[str, Detector]:
    """The named detectors; ``yunet`` is the bundled one, ``yunet-file`` the float file in ../shared."""
    detectors = {}
    for name in names:
        plugin, options = ("yunet", {"model_path": YUNET}) if name == "yunet-file" else (name, {})
        try:
            detectors[name] = DETECTORS.create(plugin, **options)
        except OpenFRTError as exc:
            Console(stderr=True).print(f"skipping detector {name}: {exc}")
    return detectors


def detector_table(detectors: dict[str, Detector], frames: list[np.ndarray], widths: list[int]) -> Table:
    table = Table(title=f"Detection: median ms per frame over {len(frames)} frames, faces found per frame")
    table.add_column("detector")
    for width in widths:
        table.add_column(f"{width} px ms", justify="right")
        table.add_column("faces", justify="right")
    for name, detector in detectors.items():
        cells = []
        for width in widths:
            scaled = [resize_width(frame, width) for frame in frames[: SLOW_DETECTORS.get(name, len(frames))]]
            times, counts = [], []
            for frame in scaled:
                times.append(median_ms(lambda f=frame: detector.detect(f), 1))
                counts.append(len(detector.detect(frame)))
            cells += [f"{statistics.median(times):.1f}", f"{statistics.mean(counts):.1f}"]
        table.add_row(name, *cells)
    return table


def sample_faces(detector: Detector) -> list[tuple[np.ndarray, Face]]:
    faces = []
    for path in sorted(FACES.glob("*.jpg")):
        rgb = load_image(path)
        faces += [(rgb, face) for face in detector.detect(rgb)]
    return faces


def embedder_variants() -> dict[str, tuple[str, dict[str, object]]]:
    """Embedders to time: label -> (plug-in, options). Thread counts are part of the variant."""
    variants: dict[str, tuple[str, dict[str, object]]] = {
        "dlib (dlib's own call)": ("dlib", {}),
        "dlib-onnx, 1 thread": ("dlib-onnx", {"threads": 1}),
        "dlib-onnx, 2 threads": ("dlib-onnx", {"threads": 2}),
        "sface (default), 1 thread": ("sface", {"threads": 1}),
        "sface (default), 2 threads": ("sface", {"threads": 2}),
    }
    if INTEL.exists():
        variants["intel-reid (OpenVINO), 1 thread"] = ("openvino", {"model_path": INTEL, "threads": 1})
        variants["intel-reid (OpenVINO), 2 threads"] = ("openvino", {"model_path": INTEL, "threads": 2})
    return variants


def embedder_table(faces: list[tuple[np.ndarray, Face]], repeats: int) -> Table:
    """ms per face one at a time and in one batch of every face, with the speed-up over dlib."""
    table = Table(title=f"Embedding: median ms per face over {len(faces)} faces (alignment included)")
    for column in ("embedder", "one face per call", f"batch of {len(faces)}", "x faster than dlib (single / batch)",
                   "time vs dlib-onnx, 2 threads (single / batch)"):
        table.add_column(column, justify="right" if column != "embedder" else "left")
    measured = {}
    for label, (plugin, options) in embedder_variants().items():
        embedder = EMBEDDERS.create(plugin, **options)
        single = statistics.median(median_ms(lambda r=rgb, f=face: embedder.embed(r, [f]), repeats) for rgb, face in faces)
        measured[label] = (single, _batched_ms(embedder, faces, repeats))
    dlib, onnx2 = next(iter(measured.values())), measured["dlib-onnx, 2 threads"]
    for label, (single, batched) in measured.items():
        table.add_row(label, f"{single:.2f}", f"{batched:.2f}", f"{dlib[0] / single:.1f} / {dlib[0] / batched:.1f}",
                      f"{single / onnx2[0]:.2f} / {batched / onnx2[1]:.2f}")
    return table


def _batched_ms(embedder: Embedder, faces: list[tuple[np.ndarray, Face]], repeats: int) -> float:
    """Per-face time when every face goes through the network in one batch."""
    if isinstance(embedder, ChipEmbedder):
        chips = [embedder.chip(rgb, face) for rgb, face in faces]
        return median_ms(lambda: embedder.embed_chips(chips), repeats) / len(faces)
    by_image: dict[int, tuple[np.ndarray, list[Face]]] = {}
    for rgb, face in faces:
        by_image.setdefault(id(rgb), (rgb, []))[1].append(face)
    return median_ms(lambda: [embedder.embed(rgb, group) for rgb, group in by_image.values()], repeats) / len(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=["yunet", "mtcnn", "yunet-file", "hog", "mmod"])
    parser.add_argument("--widths", nargs="+", type=int, default=[640, 960, 1920])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    if not VIDEO.exists():
        raise SystemExit(f"needs {VIDEO} (the shared data beside the project)")
    frames = video_frames(VIDEO, args.frames)
    console.print(detector_table(build_detectors(args.detectors), frames, args.widths))
    faces = sample_faces(DETECTORS.create("yunet"))
    console.print(embedder_table(faces, args.repeats))


if __name__ == "__main__":
    main()
