"""Embedders for strong models the user supplies from a path (their weights are not on PyPI).

Families, not files, decide preprocessing: ArcFace-style ONNX models (InsightFace ``w600k_*``,
``glint360k_*``; 112x112, ``(x - 127.5) / 127.5`` unless the graph normalises itself), OpenCV
Zoo SFace (112x112, raw 0..255 RGB) and Intel's ``face-reidentification-retail-0095`` (OpenVINO
IR, 128x128 BGR 0..255). Templates are tagged with the file's name and a digest of its weights,
so they are only ever compared with templates from the very same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from openfrt.errors import ModelError
from openfrt.vision.align import ARCFACE_REFERENCE_112, INTEL_REID_REFERENCE_128
from openfrt.vision.embedders.base import EMBEDDERS
from openfrt.vision.embedders.chip import ChipEmbedder, ChipSpec, OnnxRuntimeBackend, OpenVinoBackend
from openfrt.vision.model_cache import sha256_of, verify_sha256

if TYPE_CHECKING:
    import onnx

#: Chip geometry and pixel scaling per family. ``arcface`` scaling is adjusted per model when the
#: graph starts by normalising its own input.
FAMILIES: dict[str, ChipSpec] = {
    "arcface": ChipSpec(112, ARCFACE_REFERENCE_112, "rgb", 127.5, 1 / 127.5),
    "sface": ChipSpec(112, ARCFACE_REFERENCE_112, "rgb", 0.0, 1.0),
    "intel-reid": ChipSpec(128, INTEL_REID_REFERENCE_128, "bgr", 0.0, 1.0),
}

#: 1:1 thresholds on openfrt's 0..1 scale. Published cosine thresholds mapped with (1 + cos) / 2
#: (ArcFace ~0.28, SFace 0.363); the Intel model's was measured on ../shared/faces/lfw.
FAMILY_THRESHOLDS = {"arcface": 0.64, "sface": 0.68, "intel-reid": 0.70}


def _check_embedder_shape(shape: list[int | str | None], path: Path, expected_size: int | None) -> int:
    """The chip size of a network input ``[N, 3, H, W]``, refusing anything that is not one."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[2] != dims[3]:
        raise ModelError(
            f"{path} is not a face embedder: expected one image input [N, 3, S, S], found {list(shape)}"
        )
    if expected_size is not None and dims[2] != expected_size:
        raise ModelError(f"{path}: input is {dims[2]}x{dims[3]}, but this family needs {expected_size}x{expected_size}")
    return int(dims[2])


def _normalises_itself(model: onnx.ModelProto) -> bool:
    """True when the image input goes through a Sub and a Mul (or Div) before anything else: the
    graph scales raw pixels itself. Followed from the input rather than read off the first nodes,
    because exporters put weight-preparing nodes (SFace's 29 dequantisations) before the first layer."""
    from openfrt.vision.convert.onnx_graph import image_input

    def sole_consumer(name: str) -> onnx.NodeProto | None:
        consumers = [node for node in model.graph.node if name in node.input]
        return consumers[0] if len(consumers) == 1 else None

    first = sole_consumer(image_input(model))
    second = sole_consumer(first.output[0]) if first is not None else None
    return second is not None and {first.op_type, second.op_type} in ({"Sub", "Mul"}, {"Sub", "Div"})


def _family_spec(family: str) -> ChipSpec:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ModelError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None


@EMBEDDERS.register("onnx")
def onnx_embedder(
    model_path: str | Path, family: str = "auto", sha256: str | None = None, threads: int = 0, batch_size: int = 32
) -> ChipEmbedder:
    """An ArcFace-family (or SFace) ONNX embedder from ``model_path``.

    A graph that declares inputs no node reads (as some exporters leave them) is cleaned in
    memory first; the file itself, and so its checksum, is left as it is.
    """
    from openfrt.vision.convert.onnx_graph import clean_graph, has_dangling_inputs

    path = Path(model_path)
    verify_sha256(path, sha256)
    model = _load_onnx(path)
    backend = OnnxRuntimeBackend(clean_graph(model, fold_constants=False, batch=False).SerializeToString()
                                 if has_dangling_inputs(model) else path, threads)
    outputs = backend.session.get_outputs()
    if len(outputs) != 1 or len(outputs[0].shape or []) != 2:
        found = ", ".join(f"{output.name} {output.shape}" for output in outputs)
        raise ModelError(f"{path} is not a face embedder: expected one [N, D] output, found {found}")
    size = _check_embedder_shape(backend.input.shape, path, None)
    if family == "auto":
        family = "arcface" if size == 112 else ""
        if not family:
            raise ModelError(f"{path}: cannot tell the family of a {size}x{size} model; pass family=arcface|sface")
    spec = _family_spec(family)
    _check_embedder_shape(backend.input.shape, path, spec.size)
    if _normalises_itself(model):
        spec = ChipSpec(spec.size, spec.reference, spec.channels, 0.0, 1.0)
    return ChipEmbedder(backend, spec, path.stem, sha256_of(path)[:12], FAMILY_THRESHOLDS[family], batch_size)


def _load_onnx(path: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and others for a file that is not ONNX
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc


@EMBEDDERS.register("openvino")
def openvino_embedder(
    model_path: str | Path,
    family: str = "intel-reid",
    sha256: str | None = None,
    weights_sha256: str | None = None,
    threads: int = 0,
    batch_size: int = 32,
) -> ChipEmbedder:
    """An OpenVINO IR embedder (``.xml`` beside its ``.bin``), e.g. face-reidentification-retail-0095.

    ``sha256`` checks the ``.xml`` and ``weights_sha256`` the ``.bin``.
    """
    path = Path(model_path)
    if path.suffix != ".xml" or not path.with_suffix(".bin").is_file():
        raise ModelError(f"{path}: an OpenVINO IR model is an .xml file with its .bin beside it")
    verify_sha256(path, sha256)
    verify_sha256(path.with_suffix(".bin"), weights_sha256)
    backend = OpenVinoBackend(path, threads)
    spec = _family_spec(family)
    _check_embedder_shape(backend.input_shape, path, spec.size)
    version = sha256_of(path.with_suffix(".bin"))[:12]
    return ChipEmbedder(backend, spec, path.stem, version, FAMILY_THRESHOLDS[family], batch_size)
