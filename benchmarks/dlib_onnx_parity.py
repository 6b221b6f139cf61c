"""Parity and speed of the ONNX conversion of dlib's face-recognition ResNet.

On N LFW faces (seeded sample of ``../shared/faces/lfw``; dlib HOG detector, largest
face per image, ``shape_predictor_5``) this compares

* dlib's ``compute_face_descriptor(img, shape)`` with onnxruntime on our own
  dlib-exact chip (``dlib_face_chip``): cosine of the two descriptors, and pixel
  difference between our chip and ``dlib.get_face_chip``;
* timings: dlib's call (chip + net), our chip extraction, onnxruntime single image on
  1 thread, onnxruntime batched on 2 threads;
* the "standard 5 points" path (eye centres, nose tip, mouth corners, here derived
  from the 68-point predictor) against dlib's own 5-point alignment.

Run from the repository root::

    python benchmarks/dlib_onnx_parity.py [--n 300] [--seed 0] [--align-n 50]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import openfrt  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

import dlib  # noqa: E402
import face_recognition_models  # noqa: E402
import onnxruntime as ort  # noqa: E402

from openfrt.vision.convert.dlib_resnet import INPUT_NAME, build_dlib_resnet_onnx  # noqa: E402
from openfrt.vision.dlib_chip import dlib_chip_from_standard_5pt, dlib_face_chip  # noqa: E402

MODELS = Path(face_recognition_models.face_recognition_model_location()).parent


@dataclass
class Face:
    """One detected face: image, dlib shape (5 points) and the landmark array."""

    path: Path
    image: np.ndarray
    rect: dlib.rectangle
    shape: dlib.full_object_detection
    points: np.ndarray


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "faces" / "lfw")
    p.add_argument("--n", type=int, default=300, help="number of faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--align-n", type=int, default=50, help="faces for the standard-5pt check")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32])
    p.add_argument("--batch-threads", type=int, default=2)
    p.add_argument("--spin", action="store_true", help="let ORT worker threads spin")
    p.add_argument("--save-onnx", type=Path, default=None)
    return p.parse_args()


def pick_images(lfw: Path, seed: int) -> list[Path]:
    """All LFW files in a seeded random order (deterministic across runs)."""
    with open(lfw / "labels.csv", newline="") as fh:
        files = sorted(row["file"] for row in csv.DictReader(fh))
    order = np.random.default_rng(seed).permutation(len(files))
    return [lfw / files[i] for i in order]


def detect_faces(paths: list[Path], n: int) -> list[Face]:
    """Largest HOG detection per image (upsampled once), until ``n`` faces."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat"))
    faces: list[Face] = []
    for path in paths:
        if len(faces) >= n:
            break
        img = dlib.load_rgb_image(str(path))
        rects = detector(img, 1)
        if not rects:
            continue
        rect = max(rects, key=lambda r: r.area())
        shape = predictor(img, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        faces.append(Face(path, img, rect, shape, pts))
    return faces


def session(model_bytes: bytes, threads: int, spin: bool = False) -> ort.InferenceSession:
    """ORT session; thread spinning is off by default because on a busy machine
    (video decoding, other models) spinning workers burn the CPU the others need."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def to_nchw(chips: list[np.ndarray]) -> np.ndarray:
    return np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def ms_per_call(fn, items: list) -> tuple[float, float]:
    """(wall, process CPU) ms per item; CPU time shows the cost when the box is busy."""
    w0, c0 = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    n = len(items)
    return (time.perf_counter() - w0) * 1000 / n, (time.process_time() - c0) * 1000 / n


def time_batched(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> tuple[float, float]:
    """(wall, CPU) ms per face over all of ``x`` in batches of ``batch``, after warm-up."""
    sess.run(None, {INPUT_NAME: x[:batch]})
    batches = [x[i : i + batch] for i in range(0, len(x), batch)]
    wall, cpu = ms_per_call(lambda xb: sess.run(None, {INPUT_NAME: xb}), batches)
    return wall * len(batches) / len(x), cpu * len(batches) / len(x)


def standard_points_from_68(shape68: dlib.full_object_detection) -> np.ndarray:
    """Eye centres (mean of 6 eye points), nose tip (30), mouth corners (48, 54)."""
    p = np.array([[q.x, q.y] for q in shape68.parts()], dtype=np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def align_check(faces: list[Face], sess: ort.InferenceSession) -> np.ndarray:
    """Cosine between descriptors of dlib-5pt chips and standard-5pt chips."""
    predictor68 = dlib.shape_predictor(str(MODELS / "shape_predictor_68_face_landmarks.dat"))
    a_chips, b_chips = [], []
    for f in faces:
        a_chips.append(dlib_face_chip(f.image, f.points))
        pts = standard_points_from_68(predictor68(f.image, f.rect))
        b_chips.append(dlib_chip_from_standard_5pt(f.image, pts))
    a = sess.run(None, {INPUT_NAME: to_nchw(a_chips)})[0]
    b = sess.run(None, {INPUT_NAME: to_nchw(b_chips)})[0]
    return cosine_rows(a, b)


def main() -> int:
    args = parse_args()
    if not (args.lfw / "labels.csv").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}")

    t0 = time.perf_counter()
    model = build_dlib_resnet_onnx(Path(face_recognition_models.face_recognition_model_location()))
    print(f"conversion: {time.perf_counter() - t0:.2f} s, {len(model.graph.node)} nodes")
    model_bytes = model.SerializeToString()
    if args.save_onnx:
        args.save_onnx.write_bytes(model_bytes)

    faces = detect_faces(pick_images(args.lfw, args.seed), args.n)
    print(f"faces: {len(faces)} (seed {args.seed})")

    recognizer = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location()
    )
    dlib_desc = np.array(
        [np.array(recognizer.compute_face_descriptor(f.image, f.shape)) for f in faces]
    )
    chips = [dlib_face_chip(f.image, f.points) for f in faces]
    ref_chips = [np.asarray(dlib.get_face_chip(f.image, f.shape, 150, 0.25)) for f in faces]
    pixel_diff = max(
        int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(chips, ref_chips)
    )
    x = to_nchw(chips)

    single = session(model_bytes, 1, args.spin)
    onnx_desc = np.concatenate(
        [single.run(None, {INPUT_NAME: x[i : i + 1]})[0] for i in range(len(x))]
    )
    cos = cosine_rows(dlib_desc, onnx_desc)
    print(f"chip max abs pixel diff vs dlib.get_face_chip: {pixel_diff}")
    print(
        f"cosine dlib vs onnx: min {cos.min():.8f}  median {np.median(cos):.8f}  "
        f"max |diff| {np.abs(dlib_desc - onnx_desc).max():.2e}  "
        f"faces below 0.9999: {(cos < 0.9999).sum()}"
    )

    # ---- timings ------------------------------------------------------------------
    tf = faces[: min(len(faces), 100)]
    rows = [
        (
            "dlib compute_face_descriptor (chip + net)",
            "(dlib)",
            ms_per_call(lambda f: recognizer.compute_face_descriptor(f.image, f.shape), tf),
        ),
        (
            "openfrt dlib_face_chip",
            "1",
            ms_per_call(lambda f: dlib_face_chip(f.image, f.points), tf),
        ),
        (
            "onnxruntime, batch 1",
            "1",
            ms_per_call(
                lambda i: single.run(None, {INPUT_NAME: x[i : i + 1]}), list(range(len(x)))
            ),
        ),
    ]
    multi = session(model_bytes, args.batch_threads, args.spin)
    for b in args.batch:
        rows.append((f"onnxruntime, batch {b}", str(args.batch_threads), time_batched(multi, x, b)))
        rows.append((f"onnxruntime, batch {b}", "1", time_batched(single, x, b)))
    print("\n| step | threads | wall ms/face | CPU ms/face |\n|---|---|---|---|")
    for name, threads, (wall, cpu) in rows:
        print(f"| {name} | {threads} | {wall:.2f} | {cpu:.2f} |")
    print("(dlib-bin: its own CPU code, no BLAS)")
    print(f"load average at end: {os.getloadavg()}")

    # ---- standard 5-point alignment ------------------------------------------------
    if args.align_n > 0:
        ac = align_check(faces[: args.align_n], single)
        print(
            f"\nstandard-5pt (from 68-pt predictor) vs dlib 5-pt chip, {len(ac)} faces: "
            f"cosine min {ac.min():.4f}  median {statistics.median(ac.tolist()):.4f}  "
            f"mean {ac.mean():.4f}"
        )
    return 0 if cos.min() >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
