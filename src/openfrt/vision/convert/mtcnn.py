"""MTCNN's three networks (P-Net, R-Net, O-Net) as ONNX graphs, built from the weights that ship
in the ``mtcnn`` PyPI package (MIT).

Why our own conversion: the ``mtcnn`` package runs its networks with TensorFlow, a very large
dependency we do not want. Its weights are plain arrays (a joblib pickle, lz4-compressed) in the
order Keras' ``set_weights`` expects, so we rebuild the graphs with ``onnx.helper`` and run them
on onnxruntime. We only read files from the package; importing it would import TensorFlow.

Layout conventions we convert from (checked against ``mtcnn/network/*.py``, version 1.0):

* images are RGB, channels-last, normalised as ``(x - 127.5) / 128`` and not transposed;
* conv kernels are ``[kh, kw, in, out]``; ONNX wants ``[out, in, kh, kw]``;
* PReLU after a conv has one slope per channel (shared over height and width);
* "same" max-pooling pads at the bottom/right only, like ONNX's ``SAME_UPPER``;
* R-Net and O-Net permute the last feature map to ``(W, H, C)`` before flattening, so the first
  dense layer's rows are in ``(w, h, c)`` order; we reorder them to ONNX's ``(c, h, w)``
  flatten order instead of adding a transpose to the graph.

Each graph takes ``uint8`` RGB images in ``NHWC`` (what OpenCV gives us), so callers need no
float conversion: the normalisation is folded into the first convolution, which is exact
because that convolution has no padding.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openfrt.errors import ModelError
from openfrt.vision.model_cache import ConvertedModel

#: Bump whenever the graphs built here would change, so stale cached models are rebuilt.
CONVERTER_VERSION = "mtcnn-onnx-4"
OPSET = 17

#: Input normalisation used in training: ``(pixel - MEAN) * SCALE``.
PIXEL_MEAN, PIXEL_SCALE = 127.5, 1.0 / 128.0

#: Square input size of R-Net and O-Net.
RNET_SIZE, ONET_SIZE = 24, 48


def weights_path(net: str) -> Path:
    """Path of ``pnet``/``rnet``/``onet``'s weights inside the installed ``mtcnn`` package.

    Found with ``find_spec``, which locates the package without running its ``__init__`` (that
    would import TensorFlow).
    """
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the mtcnn detector needs the 'mtcnn' package (pip install mtcnn) for its weights")
    path = Path(spec.submodule_search_locations[0]) / "assets" / "weights" / f"{net}.lz4"
    if not path.is_file():
        raise ModelError(f"MTCNN weights file missing from the mtcnn package: {path}")
    return path


def load_weights(net: str) -> list[np.ndarray]:
    """The arrays of one network, in Keras ``set_weights`` order."""
    import joblib  # installed with mtcnn; only needed when (re)building a model

    arrays = joblib.load(weights_path(net))
    return [np.asarray(array, dtype=np.float32) for array in arrays]


class _GraphBuilder:
    """Accumulates nodes and initialisers; each method adds one layer and returns its output name."""

    def __init__(self, weights: list[np.ndarray]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._weights: Iterator[np.ndarray] = iter(weights)
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}{self._count}"

    def constant(self, array: np.ndarray) -> str:
        name = self._name("w")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        output = output or self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def next_weight(self) -> np.ndarray:
        weight = next(self._weights, None)
        if weight is None:
            raise ModelError("MTCNN weights have fewer arrays than the network needs")
        return weight

    def input_conv(self, x: str) -> str:
        """First convolution with the pixel normalisation folded into its weights and bias.

        ``conv((x - m) * s) = conv_{W*s}(x) - m * s * sum(W)``, exactly, as it has no padding.
        """
        kernel, bias = self.next_weight(), self.next_weight()
        bias = bias - PIXEL_MEAN * PIXEL_SCALE * kernel.sum(axis=(0, 1, 2))
        return self._conv(x, kernel * PIXEL_SCALE, bias)

    def conv(self, x: str, output: str | None = None) -> str:
        return self._conv(x, self.next_weight(), self.next_weight(), output)

    def _conv(self, x: str, kernel: np.ndarray, bias: np.ndarray, output: str | None = None) -> str:
        kernel_oihw = kernel.transpose(3, 2, 0, 1)  # Keras [kh, kw, in, out] -> ONNX [out, in, kh, kw]
        return self.node("Conv", [x, self.constant(kernel_oihw), self.constant(bias)], output)

    def channel_prelu(self, x: str) -> str:
        """PReLU on an NCHW map: Keras' ``(1, 1, C)`` slopes become ``(C, 1, 1)``."""
        return self._prelu(x, self.next_weight().reshape(-1, 1, 1))

    def prelu(self, x: str) -> str:
        return self._prelu(x, self.next_weight())

    def _prelu(self, x: str, slopes: np.ndarray) -> str:
        """PReLU as ``a*x + (1 - a)*relu(x)``, exact for any slope ``a``.

        onnxruntime's PRelu kernel was most of P-Net's run time (about 15x slower than
        elementwise ops on P-Net's largest map); Relu, Mul and Add instead are fused into the
        surrounding convolutions by its NCHWc layout optimiser.
        """
        scaled = self.node("Mul", [x, self.constant(slopes)])
        positive = self.node("Mul", [self.node("Relu", [x]), self.constant(1.0 - slopes)])
        return self.node("Add", [scaled, positive])

    def max_pool(self, x: str, size: int, stride: int, same: bool) -> str:
        padding = {"auto_pad": "SAME_UPPER"} if same else {}
        return self.node("MaxPool", [x], kernel_shape=[size, size], strides=[stride, stride], **padding)

    def dense_from_permuted_map(self, x: str, map_shape: tuple[int, int, int]) -> str:
        """Flatten an NCHW map and apply a dense layer whose rows are in Keras' ``(w, h, c)`` order."""
        channels, height, width = map_shape
        kernel, bias = self.next_weight(), self.next_weight()
        rows_chw = (
            kernel.reshape(width, height, channels, -1).transpose(2, 1, 0, 3).reshape(channels * height * width, -1)
        )
        flat = self.node("Flatten", [x], axis=1)
        return self.node("Gemm", [flat, self.constant(rows_chw), self.constant(bias)])

    def dense(self, x: str, output: str | None = None) -> str:
        kernel, bias = self.next_weight(), self.next_weight()
        return self.node("Gemm", [x, self.constant(kernel), self.constant(bias)], output)

    def conv_face_probability(self, x: str) -> str:
        """A 1x1 conv head with a two-class softmax, as the probability of "face" only.

        ``softmax(l)[1] = sigmoid(l1 - l0)``, and ``l1 - l0`` is itself a 1x1 conv with the
        difference of the two classes' weights, so the head becomes one conv and a sigmoid
        (onnxruntime's Softmax over channels was a tenth of P-Net's time).
        """
        kernel, bias = self.next_weight(), self.next_weight()
        logit = self._conv(x, kernel[..., 1:] - kernel[..., :1], bias[1:] - bias[:1])
        return self.node("Sigmoid", [self.node("Squeeze", [logit, self.int64s([1])])], "face")

    def dense_face_probability(self, x: str) -> str:
        """Like :meth:`conv_face_probability`, for a dense head."""
        kernel, bias = self.next_weight(), self.next_weight()
        logit = self.node("Gemm", [x, self.constant(kernel[:, 1:] - kernel[:, :1]), self.constant(bias[1:] - bias[:1])])
        return self.node("Sigmoid", [self.node("Squeeze", [logit, self.int64s([1])])], "face")

    def int64s(self, values: list[int]) -> str:
        name = self._name("i")
        self.initializers.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def finish(self, name: str, height: int | str, width: int | str, outputs: dict[str, list[int | str]]) -> bytes:
        self._check_all_weights_used()
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", height, width, 3])],
            [helper.make_tensor_value_info(key, TensorProto.FLOAT, shape) for key, shape in outputs.items()],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="openfrt")
        onnx.checker.check_model(model, full_check=True)
        return model.SerializeToString()

    def _check_all_weights_used(self) -> None:
        leftover = next(self._weights, None)
        if leftover is not None:
            raise ModelError(f"MTCNN weights have more arrays than the network uses (next: {leftover.shape})")


#: onnxruntime's fast (NCHWc) convolutions and pools work on blocks of 16 channels (AVX-512).
CHANNEL_BLOCK = 16


def _pad_first_layer(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Give the first convolution a multiple of :data:`CHANNEL_BLOCK` output channels.

    P-Net's first layer has 10 channels and R-Net's 28, which keeps onnxruntime off its
    blocked-layout kernels for the next layers; padding with all-zero channels (zero weights
    and bias, so PReLU gives 0, and zero weights where the second convolution reads them)
    changes no output and made R-Net about 15% faster.
    """
    kernel, bias, slopes, next_kernel, *rest = weights
    extra = -kernel.shape[3] % CHANNEL_BLOCK
    return [
        np.pad(kernel, ((0, 0), (0, 0), (0, 0), (0, extra))),
        np.pad(bias, (0, extra)),
        np.pad(slopes, ((0, 0), (0, 0), (0, extra))),
        np.pad(next_kernel, ((0, 0), (0, 0), (0, extra), (0, 0))),
        *rest,
    ]


def _nchw_float(builder: _GraphBuilder) -> str:
    """The ``uint8`` NHWC input as float NCHW."""
    as_float = builder.node("Cast", ["image"], to=TensorProto.FLOAT)
    return builder.node("Transpose", [as_float], perm=[0, 3, 1, 2])


def build_pnet(weights: list[np.ndarray] | None = None) -> bytes:
    """P-Net: fully convolutional; one output cell per 12x12 window, stride 2.

    Outputs ``face`` ``[N, H', W']`` and ``offsets`` ``[N, 4, H', W']`` (x1, y1, x2, y2 as
    fractions of the window size).
    """
    b = _GraphBuilder(_pad_first_layer(weights if weights is not None else load_weights("pnet")))
    x = b.channel_prelu(b.input_conv(_nchw_float(b)))
    x = b.max_pool(x, 2, 2, same=True)
    x = b.channel_prelu(b.conv(x))
    x = b.channel_prelu(b.conv(x))
    b.conv(x, "offsets")  # the offsets head comes first in the weights
    b.conv_face_probability(x)
    return b.finish(
        "mtcnn_pnet", "height", "width", {"face": ["batch", "rows", "cols"], "offsets": ["batch", 4, "rows", "cols"]}
    )


def build_rnet(weights: list[np.ndarray] | None = None) -> bytes:
    """R-Net on 24x24 crops. Outputs ``face`` ``[N]`` and ``offsets`` ``[N, 4]``."""
    b = _GraphBuilder(_pad_first_layer(weights if weights is not None else load_weights("rnet")))
    x = b.max_pool(b.channel_prelu(b.input_conv(_nchw_float(b))), 3, 2, same=True)
    x = b.max_pool(b.channel_prelu(b.conv(x)), 3, 2, same=False)
    x = b.channel_prelu(b.conv(x))
    x = b.prelu(b.dense_from_permuted_map(x, (64, 3, 3)))
    b.dense(x, "offsets")
    b.dense_face_probability(x)
    return b.finish("mtcnn_rnet", RNET_SIZE, RNET_SIZE, {"face": ["batch"], "offsets": ["batch", 4]})


def build_onet(weights: list[np.ndarray] | None = None) -> bytes:
    """O-Net on 48x48 crops. Outputs ``face`` ``[N]``, ``offsets`` ``[N, 4]`` and ``landmarks``
    ``[N, 10]`` (five x then five y, as fractions of the crop)."""
    b = _GraphBuilder(_pad_first_layer(weights if weights is not None else load_weights("onet")))
    x = b.max_pool(b.channel_prelu(b.input_conv(_nchw_float(b))), 3, 2, same=True)
    x = b.max_pool(b.channel_prelu(b.conv(x)), 3, 2, same=False)
    x = b.max_pool(b.channel_prelu(b.conv(x)), 2, 2, same=True)
    x = b.channel_prelu(b.conv(x))
    x = b.prelu(b.dense_from_permuted_map(x, (128, 3, 3)))
    b.dense(x, "offsets")
    b.dense(x, "landmarks")
    b.dense_face_probability(x)
    return b.finish(
        "mtcnn_onet", ONET_SIZE, ONET_SIZE, {"face": ["batch"], "offsets": ["batch", 4], "landmarks": ["batch", 10]}
    )


_BUILDERS = {"pnet": build_pnet, "rnet": build_rnet, "onet": build_onet}


def converted_model(net: str) -> ConvertedModel:
    """The cached ONNX model of ``pnet``, ``rnet`` or ``onet``; ``.ensure()`` gives its path."""
    build = _BUILDERS[net]
    return ConvertedModel(f"mtcnn-{net}", (weights_path(net),), lambda: build(None), CONVERTER_VERSION)
