"""Convert dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``)
to ONNX.

Why: dlib's own CPU forward pass costs ~100 ms per face here; the same network on
onnxruntime is an order of magnitude faster and needs no dlib at run time.

The graph takes the raw 150x150 RGB face chip (as produced by dlib's
``get_face_chip``; see :mod:`openfrt.vision.dlib_chip`) as float32 0..255 in NCHW and
returns dlib's 128-d descriptor unchanged (not unit length; callers L2-normalise).

Folding done at conversion time (all exact up to float rounding):

* dlib's input scaling ``(pixel - avg) / 256`` becomes one ``Sub`` plus a 1/256 factor
  folded into the first convolution's weights (a power of two, so bit-exact). The
  mean is *not* folded into the bias, because that would be wrong wherever a padded
  convolution reads the zero border.
* every ``affine`` layer (dlib's frozen batch-norm) following a convolution is folded
  into that convolution's weights and bias.
* ``add_prev`` of tensors of different shapes (dlib zero-fills the missing channels /
  rows / columns) becomes ``Pad`` + ``Add``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .dlib_format import (
    AddPrev,
    Affine,
    Conv,
    DlibNet,
    FullyConnected,
    Layer,
    Node,
    Pool,
    Relu,
    Skip,
    Tag,
    read_dlib_net,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "CHIP_SIZE",
    "face_recognition_resnet_spec",
    "read_face_recognition_resnet",
    "build_dlib_resnet_onnx",
]

INPUT_NAME = "image"
OUTPUT_NAME = "template"
CHIP_SIZE = 150
_OPSET = 17  # well inside what onnxruntime 1.32 supports
_IR_VERSION = 8  # the IR version that goes with opset 17

# --------------------------------------------------------------------------------------
# The C++ type of dlib's face-recognition network (tools/python/src/face_recognition.cpp)
# written out as a list of wrappers, outermost first.
# --------------------------------------------------------------------------------------


def _block(sub: list[Node]) -> list[Node]:
    """``block = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride, SUBNET>>>>>``.

    Filter counts, kernel sizes and strides are read from the file, so the spec only
    records the kinds of wrappers.
    """
    return [Node("affine"), Node("con"), Node("relu"), Node("affine"), Node("con"), *sub]


def _ares(sub: list[Node]) -> list[Node]:
    """``relu<add_prev1<block<stride 1, tag1<SUBNET>>>>`` (identity residual)."""
    return [Node("relu"), Node("add_prev", 1), *_block([Node("tag", 1), *sub])]


def _ares_down(sub: list[Node]) -> list[Node]:
    """``relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<stride 2, tag1<SUBNET>>>>>>>``."""
    return [
        Node("relu"),
        Node("add_prev", 2),
        Node("avg_pool"),
        Node("skip", 1),
        Node("tag", 2),
        *_block([Node("tag", 1), *sub]),
    ]


def _repeat(fn: Callable[[list[Node]], list[Node]], times: int, sub: list[Node]) -> list[Node]:
    """Nest ``fn`` ``times`` times around ``sub`` (dlib writes e.g. ``ares<ares<ares<S>>>``)."""
    for _ in range(times):
        sub = fn(sub)
    return sub


def face_recognition_resnet_spec() -> list[Node]:
    """``anet_type`` of dlib's face recognition model, as :class:`Node` list."""
    net = [Node("con"), Node("input_rgb_image_sized")]
    net = [Node("max_pool"), Node("relu"), Node("affine"), *net]
    net = _repeat(_ares, 3, net)  # alevel4: 3 x ares<32>
    net = _repeat(_ares, 3, _ares_down(net))  # alevel3: ares_down<64> + 3 x ares<64>
    net = _repeat(_ares, 2, _ares_down(net))  # alevel2: 128
    net = _repeat(_ares, 2, _ares_down(net))  # alevel1: 256
    net = _ares_down(net)  # alevel0: ares_down<256>
    return [Node("loss_metric"), Node("fc"), Node("avg_pool"), *net]


def read_face_recognition_resnet(dat_path: Path | str) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (raises ``DlibFormatError``)."""
    return read_dlib_net(dat_path, face_recognition_resnet_spec())


# --------------------------------------------------------------------------------------
# Layer folding
# --------------------------------------------------------------------------------------


def _fold_affine(conv: Conv, affine: Affine) -> Conv:
    """Return ``affine(conv(x))`` as a single convolution."""
    out_channels = conv.filters.shape[0]
    gamma = affine.gamma.astype(np.float64).reshape(-1)
    beta = affine.beta.astype(np.float64).reshape(-1)
    if gamma.size != out_channels:
        raise ValueError(f"affine with {gamma.size} channels after conv with {out_channels}")
    weights = conv.filters.astype(np.float64) * gamma[:, None, None, None]
    bias = np.zeros(out_channels) if conv.bias is None else conv.bias.astype(np.float64)
    bias = bias * gamma + beta
    return Conv(
        filters=weights.astype(np.float32),
        bias=bias.astype(np.float32),
        stride=conv.stride,
        padding=conv.padding,
        relu=conv.relu,
    )


def _fold_layers(layers: tuple[Layer, ...]) -> list[Layer]:
    """Drop disabled layers and merge conv+affine pairs (affine on a conv output only).

    A conv with dlib's fused ``relu`` flag cannot absorb a following affine, and an
    affine whose input is also read elsewhere (a tag) would change that other reader,
    so only the plain ``conv -> affine`` adjacency is folded.
    """
    out: list[Layer] = []
    for layer in layers:
        if isinstance(layer, (Affine, Relu)) and layer.disabled:
            continue
        prev = out[-1] if out else None
        if (
            isinstance(layer, Affine)
            and layer.conv_mode
            and isinstance(prev, Conv)
            and not prev.relu
        ):
            out[-1] = _fold_affine(prev, layer)
            continue
        out.append(layer)
    return out


# --------------------------------------------------------------------------------------
# Graph building
# --------------------------------------------------------------------------------------


@dataclass
class _Value:
    """A tensor in the graph under construction: its name and static (C, H, W)."""

    name: str
    chw: tuple[int, int, int]


class _GraphBuilder:
    """Accumulates nodes/initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, array: np.ndarray) -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str, **attrs) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _pool_out(size: int, window: int, stride: int, pad: int) -> int:
    """dlib's (and ONNX's floor-mode) output size for conv and pooling."""
    return 1 + (size + 2 * pad - window) // stride


def _emit_conv(g: _GraphBuilder, x: _Value, conv: Conv) -> _Value:
    out_c, _, kh, kw = conv.filters.shape
    (sy, sx), (py, px) = conv.stride, conv.padding
    inputs = [x.name, g.const("W", conv.filters)]
    if conv.bias is not None:
        inputs.append(g.const("B", conv.bias))
    name = g.op(
        "Conv",
        inputs,
        "conv",
        kernel_shape=[kh, kw],
        strides=[sy, sx],
        pads=[py, px, py, px],
    )
    if conv.relu:
        name = g.op("Relu", [name], "relu")
    _, h, w = x.chw
    return _Value(name, (out_c, _pool_out(h, kh, sy, py), _pool_out(w, kw, sx, px)))


def _emit_affine(g: _GraphBuilder, x: _Value, affine: Affine) -> _Value:
    """An affine layer that could not be folded: Mul + Add with broadcasting."""
    shape = (1, -1, 1, 1) if affine.conv_mode else affine.gamma.shape
    gamma = g.const("gamma", affine.gamma.reshape(shape))
    beta = g.const("beta", affine.beta.reshape(shape))
    scaled = g.op("Mul", [x.name, gamma], "affine_mul")
    return _Value(g.op("Add", [scaled, beta], "affine_add"), x.chw)


def _emit_pool(g: _GraphBuilder, x: _Value, pool: Pool) -> _Value:
    c, h, w = x.chw
    (wh, ww), (sy, sx), (py, px) = pool.window, pool.stride, pool.padding
    if wh == 0 and ww == 0 and pool.op == "avg" and py == px == 0:
        return _Value(g.op("GlobalAveragePool", [x.name], "gap"), (c, 1, 1))
    wh, ww = wh or h, ww or w
    attrs = dict(kernel_shape=[wh, ww], strides=[sy, sx], pads=[py, px, py, px])
    if pool.op == "max":
        name = g.op("MaxPool", [x.name], "maxpool", **attrs)
    else:  # dlib averages only the in-image part of a window
        name = g.op("AveragePool", [x.name], "avgpool", count_include_pad=0, **attrs)
    return _Value(name, (c, _pool_out(h, wh, sy, py), _pool_out(w, ww, sx, px)))


def _pad_to(g: _GraphBuilder, x: _Value, chw: tuple[int, int, int]) -> str:
    """Zero-pad x at the end of C/H/W up to ``chw`` (dlib's add_prev semantics)."""
    extra = [t - s for t, s in zip(chw, x.chw)]
    if not any(extra):
        return x.name
    pads = np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64)
    return g.op("Pad", [x.name, g.const("pads", pads)], "pad", mode="constant")


def _emit_add_prev(g: _GraphBuilder, x: _Value, other: _Value) -> _Value:
    chw = tuple(max(a, b) for a, b in zip(x.chw, other.chw))
    a, b = _pad_to(g, x, chw), _pad_to(g, other, chw)
    return _Value(g.op("Add", [a, b], "add"), chw)  # type: ignore[arg-type]


def _emit_fc(g: _GraphBuilder, x: _Value, fc: FullyConnected) -> _Value:
    flat = g.op("Flatten", [x.name], "flatten", axis=1)
    if fc.weights.shape[0] != int(np.prod(x.chw)):
        raise ValueError(f"fc expects {fc.weights.shape[0]} inputs, gets {x.chw}")
    out = g.op("MatMul", [flat, g.const("fcW", fc.weights)], "fc")
    if fc.bias is not None:
        out = g.op("Add", [out, g.const("fcB", fc.bias)], "fc_bias")
    return _Value(out, (fc.weights.shape[1], 1, 1))


def _emit_layers(g: _GraphBuilder, x: _Value, layers: list[Layer]) -> _Value:
    tags: dict[int, _Value] = {}
    for layer in layers:
        if isinstance(layer, Conv):
            x = _emit_conv(g, x, layer)
        elif isinstance(layer, Affine):
            x = _emit_affine(g, x, layer)
        elif isinstance(layer, Relu):
            x = _Value(g.op("Relu", [x.name], "relu"), x.chw)
        elif isinstance(layer, Pool):
            x = _emit_pool(g, x, layer)
        elif isinstance(layer, FullyConnected):
            x = _emit_fc(g, x, layer)
        elif isinstance(layer, Tag):
            tags[layer.tag] = x
        elif isinstance(layer, Skip):
            x = tags[layer.tag]
        elif isinstance(layer, AddPrev):
            x = _emit_add_prev(g, x, tags[layer.tag])
        else:  # pragma: no cover - exhaustive over Layer
            raise TypeError(f"unsupported layer {type(layer).__name__}")
    return x


def _scale_first_conv(layers: list[Layer], factor: float) -> list[Layer]:
    """Fold dlib's 1/256 input scaling into the first conv (exact: power of two)."""
    first = layers[0]
    if not isinstance(first, Conv):
        raise ValueError("expected the network to start with a convolution")
    scaled = Conv(
        filters=(first.filters * np.float32(factor)).astype(np.float32),
        bias=first.bias,
        stride=first.stride,
        padding=first.padding,
        relu=first.relu,
    )
    return [scaled, *layers[1:]]


def build_dlib_resnet_onnx(dat_path: Path) -> onnx.ModelProto:
    """Build the ONNX model for dlib's face-recognition ResNet stored at ``dat_path``.

    Input ``image``: float32 [N, 3, 150, 150], RGB, raw 0..255 (a dlib face chip).
    Output ``template``: float32 [N, 128], dlib's descriptor (not normalised).
    """
    net = read_face_recognition_resnet(dat_path)
    rows, cols = net.input.rows, net.input.cols
    layers = _scale_first_conv(_fold_layers(net.layers), 1.0 / 256.0)

    g = _GraphBuilder()
    mean = np.array(net.input.avg_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    centred = g.op("Sub", [INPUT_NAME, g.const("mean_rgb", mean)], "centre")
    out = _emit_layers(g, _Value(centred, (3, rows, cols)), layers)
    g.nodes[-1].output[0] = OUTPUT_NAME  # rename the final tensor
    if out.name != g.nodes[-1].name:
        raise RuntimeError("the network output is not the last node")

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, rows, cols])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", out.chw[0]])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="openfrt.vision.convert.dlib_resnet",
        doc_string=f"Converted from {Path(dat_path).name}; input raw RGB 0..255 NCHW.",
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model
