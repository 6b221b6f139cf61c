"""Chip embedders: align each face to a model's reference points, then run a CNN on the chips.

One :class:`ChipEmbedder` serves every model of this shape — dlib's ResNet converted to ONNX,
ArcFace-family ONNX models, Intel's OpenVINO re-identification model — because they differ only
in chip geometry, pixel normalisation and the runtime that executes them. Those differences are
data (:class:`ChipSpec`) and a small :class:`InferenceBackend`, not new classes of embedder.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from openfrt.errors import ModelError
from openfrt.vision.align import warp_to_reference
from openfrt.vision.embedders.base import Embedder
from openfrt.vision.types import Face, Template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChipSpec:
    """How a model wants its input: chip size, landmark reference points, channels, scaling.

    The network sees ``(pixel - mean) * scale`` in ``channels`` order, NCHW.
    """

    size: int
    reference: np.ndarray
    channels: Literal["rgb", "bgr"] = "rgb"
    mean: float = 0.0
    scale: float = 1.0

    def to_batch(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Stack RGB uint8 chips into the network's float32 NCHW input."""
        batch = np.stack(chips).astype(np.float32)
        if self.channels == "bgr":
            batch = batch[..., ::-1]
        if self.mean or self.scale != 1.0:
            batch = (batch - self.mean) * self.scale
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


#: Uses of one input size after which :class:`OpenVinoBackend` compiles a request for it.
SHAPED_AFTER = 3

#: Size-specific requests an :class:`OpenVinoBackend` keeps (each a few MB).
SHAPED_KEPT = 32


class InferenceBackend(ABC):
    """Runs a network on a float32 NCHW batch and returns an ``N x D`` float32 array."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntimeBackend(InferenceBackend):
    """onnxruntime on the CPU. ``threads`` = intra-op threads (0: onnxruntime's default)."""

    def __init__(self, model: Path | bytes, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Spinning worker threads burn CPU that the decoder and detector need on a 2-core box.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelError(f"{model if isinstance(model, Path) else 'model'} is not a loadable ONNX model: {exc}") from exc
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input.name: batch})[0], dtype=np.float32)


class OpenVinoBackend(InferenceBackend):
    """OpenVINO on the CPU, for IR (``.xml`` + ``.bin``) or ONNX files. ``precision`` "f32"
    (the default) gives results that match the paper figures, where OpenVINO would otherwise run
    FP16 weights, or everything on a bfloat16-capable CPU, in reduced precision; "bf16" is asked
    for where speed matters more (see :func:`native_bf16`)."""

    def __init__(
        self,
        model_path: Path,
        threads: int = 0,
        precision: str = "f32",
        free_size: bool = False,
        image_channels: Literal["rgb", "bgr"] | None = None,
    ) -> None:
        """``free_size`` also leaves the input's height and width free (a fully convolutional
        detector), and compiles a request for each size that keeps coming (:meth:`_request_for`);
        the batch size is always free. ``image_channels`` makes the model take uint8 RGB images,
        ``(N, H, W, 3)``, and turn them into its float32 NCHW input in those channels itself:
        cheaper than numpy's copy (a 1080p frame: 4.8 ms)."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelError("OpenVINO models need the openvino package (an openfrt dependency): pip install openvino") from exc
        # Without pinning: OpenVINO pins a model's threads to cores of its choosing, and two
        # single-thread models (two cameras' engines) then share one core and run one at a time.
        self._config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._path, self._image_channels = model_path, image_channels
        self._shaped: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._uses: Counter[tuple[int, ...]] = Counter()
        try:
            self._core = ov.Core()
            model = self._core.read_model(str(model_path))
            shape = model.inputs[0].get_partial_shape()
            self.input_shape = [dim.get_length() if dim.is_static else -1 for dim in shape]
            self._free = [0, 2, 3] if free_size else [0]
            self.output_names = [output.get_any_name() for output in model.outputs]  # compiling renames some
            self._request = self._compiled(model, None)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with C++ messages
            raise ModelError(f"{model_path} is not a loadable OpenVINO model: {exc}") from exc

    def _compiled(self, model: Any, size: tuple[int, ...] | None) -> Any:
        """An infer request for ``model`` with its free axes left free (``size`` None) or set to
        ``size``, taking uint8 images if asked."""
        import openvino as ov
        from openvino.preprocess import ColorFormat, PrePostProcessor

        shape = model.inputs[0].get_partial_shape()
        for position, axis in enumerate(self._free):
            shape[axis] = -1 if size is None else size[position]
        model.reshape({model.inputs[0]: shape})
        if self._image_channels is not None:
            steps = PrePostProcessor(model)
            steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.RGB)
            steps.input().model().set_layout(ov.Layout("NCHW"))
            steps.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.__members__[self._image_channels.upper()])
            model = steps.build()
        return self._core.compile_model(model, "CPU", self._config).create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.outputs(batch)[self.output_names[0]], dtype=np.float32).reshape(len(batch), -1)

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the model for ``batch``, by the model's output names."""
        return {name: np.asarray(value) for name, value in zip(self.output_names, self._request_for(batch).infer(batch).to_tuple())}

    def _request_for(self, batch: np.ndarray) -> Any:
        """With free image sizes, a request compiled for ``batch``'s size once that size has come
        ``SHAPED_AFTER`` times (the free-size one until then): OpenVINO runs a fixed size faster
        (YuNet in bfloat16 on one thread: 0.8 of the time on a 1080p frame, 0.7 on a 160 px
        window), and compiling one costs about 150 ms, which a size seen once or twice would not
        repay. The ``SHAPED_KEPT`` most recently used are kept."""
        if self._free == [0]:
            return self._request  # batch sizes vary too much to be worth compiling each
        size = tuple(batch.shape[axis] for axis in self._layout_axes())
        request = self._shaped.get(size)
        if request is not None:
            self._shaped.move_to_end(size)
            return request
        if len(self._uses) > 4 * SHAPED_KEPT:
            self._uses.clear()  # sizes that never came back
        self._uses[size] += 1
        if self._uses[size] < SHAPED_AFTER:
            return self._request
        request = self._shaped[size] = self._compiled(self._core.read_model(str(self._path)), size)
        del self._uses[size]
        if len(self._shaped) > SHAPED_KEPT:
            self._shaped.popitem(last=False)
        return request

    @property
    def pins_threads(self) -> bool:
        """Whether OpenVINO pins this model's inference threads to cores (as it reports it)."""
        return bool(self._request.get_compiled_model().get_property("ENABLE_CPU_PINNING"))

    @property
    def compiled_sizes(self) -> list[tuple[int, ...]]:
        """Input sizes with a request of their own, least recently used first."""
        return list(self._shaped)

    def _layout_axes(self) -> list[int]:
        """The batch's axes that are the model's free axes (images are NHWC, the model NCHW)."""
        if self._image_channels is None:
            return self._free
        return [{0: 0, 2: 1, 3: 2}[axis] for axis in self._free]


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether OpenVINO is installed and this CPU computes in bfloat16 natively (AVX-512 BF16 or
    AMX). SFace in bfloat16 there takes about 0.55 of float32's CPU per face, with templates
    within cosine 0.9996 of float32's (README); elsewhere OpenVINO would emulate it, slower."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


#: The runtimes the built-in YuNet and SFace offer (``runtime`` in their options).
RUNTIMES = ("onnxruntime", "openvino-bf16")


def runtime_here(runtime: str, model: str) -> str:
    """The runtime ``model`` runs on on this machine: ``runtime``, refused unless one of
    :data:`RUNTIMES`, except that "openvino-bf16" becomes "onnxruntime" where the CPU does not
    compute bfloat16 natively. OpenVINO would run in float32 there, slower than onnxruntime, and
    the choice may have been made on another machine (a Ray driver building a camera's engine)."""
    if runtime not in RUNTIMES:
        raise ModelError(f"{model} runtime must be {' or '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "openvino-bf16" and not native_bf16():
        log.info("%s runs float32 on onnxruntime: this CPU does not compute bfloat16 natively", model)
        return "onnxruntime"
    return runtime


class ChipEmbedder(Embedder):
    """Aligns faces to ``spec`` and embeds them with ``backend``, ``batch_size`` chips per run."""

    def __init__(
        self,
        backend: InferenceBackend,
        spec: ChipSpec,
        model: str,
        model_version: str,
        threshold: float,
        batch_size: int = 32,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.model = model
        self.model_version = model_version
        self.default_threshold = threshold
        self.batch_size = batch_size

    def chip(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The aligned RGB chip of one face; subclasses may align more exactly."""
        return warp_to_reference(rgb, face.landmarks, self.spec.reference, self.spec.size)

    def embed(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[Template]:
        return self.embed_chips([self.chip(rgb, face) for face in faces])

    def embed_chips(self, chips: Sequence[np.ndarray]) -> list[Template]:
        """Templates of already aligned chips, batched — lets callers batch across images."""
        templates: list[Template] = []
        for start in range(0, len(chips), self.batch_size):
            vectors = self.backend.run(self.spec.to_batch(chips[start : start + self.batch_size]))
            templates += [Template(vector, self.model, self.model_version) for vector in vectors]
        return templates
