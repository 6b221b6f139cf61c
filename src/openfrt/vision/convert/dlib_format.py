"""Reader for dlib's binary serialisation of DNN models (``*.dat`` files).

Why our own reader: we want to run dlib's networks on onnxruntime without needing
dlib at inference time, so we read the weights straight from the file dlib wrote.

The format is not self-describing. dlib writes a network by recursing over its C++
type: each wrapper (``add_loss_layer``, ``add_layer``, ``add_tag_layer``,
``add_skip_layer``) writes a version number, and each layer's *details* object writes a
version string (``"con_4"``, ``"affine_"``, ...) followed by its fields. Which wrapper
comes next, and which tag a ``skip``/``add_prev`` refers to, is only known from the
network's type. So the caller describes the network as a list of :class:`Node` (outer
to inner, exactly as the C++ template nest reads) and :func:`read_dlib_net` walks the
stream along that description, checking every version tag it meets.

Primitive encodings (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):

* integer: one control byte (low 4 bits = number of payload bytes, bit 0x80 = negative
  for signed types) followed by that many little-endian magnitude bytes;
* floating point: ``mantissa`` (signed integer) then ``exponent`` (signed integer), both
  in the integer format; value = mantissa * 2**exponent, with exponents 32000/32001/
  32002 meaning +inf/-inf/NaN;
* bool: the ASCII byte ``'1'`` or ``'0'``;
* string: length (integer) followed by the raw bytes;
* tensor: version 2, then num_samples, k, nr, nc (integers), then the values as
  little-endian IEEE float32;
* alias_tensor (a view into a layer's parameter tensor): version 1, then its 4 dims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DlibFormatError",
    "Node",
    "InputRGBImage",
    "LossMetric",
    "Conv",
    "Affine",
    "Relu",
    "Pool",
    "FullyConnected",
    "Tag",
    "Skip",
    "AddPrev",
    "Layer",
    "DlibNet",
    "read_dlib_net",
]

_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002
_CONV_MODE = 0  # dlib::layer_mode
_FC_NO_BIAS = 1  # dlib::fc_bias_mode


class DlibFormatError(ValueError):
    """The file is not a dlib network of the expected type (truncated, corrupt, other)."""


# --------------------------------------------------------------------------------------
# Network description (what the C++ type says) and parsed layers (what the file says)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One wrapper in the C++ type nest, outermost first.

    ``kind`` is one of: ``loss_metric``, ``con``, ``affine``, ``relu``, ``max_pool``,
    ``avg_pool``, ``fc``, ``add_prev``, ``tag``, ``skip``, ``input_rgb_image_sized``.
    ``tag`` is the tag number for ``tag``/``skip``/``add_prev`` nodes.
    """

    kind: str
    tag: int | None = None


@dataclass(frozen=True)
class InputRGBImage:
    """``input_rgb_image_sized``: input = (pixel - avg) / 256, planes R, G, B."""

    avg_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class LossMetric:
    """``loss_metric``: training-only settings; inference output is the subnet output."""

    margin: float
    distance_threshold: float


@dataclass(frozen=True)
class Conv:
    """``con_``: cross-correlation, filters [out, in, kh, kw], symmetric zero padding."""

    filters: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    relu: bool = False


@dataclass(frozen=True)
class Affine:
    """``affine_``: y = gamma * x + beta, per channel (conv mode) or per element."""

    gamma: np.ndarray  # shape (1, k, nr, nc) as dlib stores the alias
    beta: np.ndarray
    conv_mode: bool
    disabled: bool = False


@dataclass(frozen=True)
class Relu:
    """``relu_``; ``disabled`` is set when dlib fused it into the previous conv."""

    disabled: bool = False


@dataclass(frozen=True)
class Pool:
    """``max_pool_``/``avg_pool_``; window (0, 0) means the whole input plane."""

    op: str  # "max" or "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class FullyConnected:
    """``fc_``: y = flatten(x) @ weights (+ bias); weights are [num_inputs, num_outputs]."""

    weights: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class Tag:
    """``tagN``: remembers the current output under number ``tag``."""

    tag: int


@dataclass(frozen=True)
class Skip:
    """``skipN``: replaces the current output with the one remembered by ``tagN``."""

    tag: int


@dataclass(frozen=True)
class AddPrev:
    """``add_prevN``: current + tagN output; dlib zero-pads the smaller one to the larger."""

    tag: int


Layer = Conv | Affine | Relu | Pool | FullyConnected | Tag | Skip | AddPrev


@dataclass(frozen=True)
class DlibNet:
    """A parsed network; ``layers`` are in forward (execution) order."""

    input: InputRGBImage
    loss: LossMetric | None
    layers: tuple[Layer, ...]


# --------------------------------------------------------------------------------------
# Primitive stream
# --------------------------------------------------------------------------------------


class _Stream:
    """Cursor over the file bytes that raises :class:`DlibFormatError` naming the file."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def error(self, message: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: {message} (at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"file truncated: needed {n} more bytes")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, signed: bool = True) -> int:
        """dlib's variable-length integer (see module docstring)."""
        control = self.take(1)[0]
        size = control & 0x0F
        negative = bool(control & 0x80)
        if control & 0x70 or size == 0 or size > 8 or (negative and not signed):
            raise self.error(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if negative else value

    def read_uint(self) -> int:
        return self.read_int(signed=False)

    def read_float(self) -> float:
        """dlib's portable float: mantissa * 2**exponent (ASCII legacy form rejected)."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.error("old ASCII float encoding is not supported")
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_INF:
            return float("inf")
        if exponent == _FLOAT_NINF:
            return float("-inf")
        if exponent == _FLOAT_NAN:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def read_bool(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.error(f"bad bool byte {byte!r}")
        return byte == b"1"

    def read_string(self, max_len: int = 1 << 16) -> str:
        n = self.read_uint()
        if n > max_len:
            raise self.error(f"implausible string length {n}")
        raw = self.take(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error("string is not ASCII") from None

    def read_tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as a float32 array of shape (n, k, nr, nc)."""
        self.expect_int(2, "tensor")
        dims = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.error(f"negative tensor dimension {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only the shape of a slice of the params tensor."""
        self.expect_int(1, "alias_tensor")
        dims = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.error(f"negative alias_tensor dimension {dims}")
        return dims  # type: ignore[return-value]

    def expect_int(self, allowed: int | tuple[int, ...], what: str) -> int:
        allowed_set = (allowed,) if isinstance(allowed, int) else allowed
        value = self.read_int()
        if value not in allowed_set:
            raise self.error(f"unexpected {what} version {value}, expected {allowed_set}")
        return value

    def expect_string(self, allowed: tuple[str, ...], what: str) -> str:
        value = self.read_string(max_len=256)
        if value not in allowed:
            raise self.error(f"expected {what} ({' or '.join(allowed)}), found {value!r}")
        return value


def _slice_params(
    stream: _Stream, params: np.ndarray, offset: int, shape: tuple[int, ...]
) -> np.ndarray:
    """Cut an alias_tensor view out of a layer's flat parameter tensor."""
    flat = params.reshape(-1)
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count > flat.size:
        raise stream.error(f"parameter tensor too small for alias {shape} at offset {offset}")
    return flat[offset : offset + count].reshape(shape).copy()


# --------------------------------------------------------------------------------------
# Layer details (dlib/dnn/layers.h, input.h, loss.h)
# --------------------------------------------------------------------------------------


def _read_input_rgb(s: _Stream) -> InputRGBImage:
    s.expect_string(("input_rgb_image_sized",), "input layer")
    avg = (s.read_float(), s.read_float(), s.read_float())
    rows, cols = s.read_uint(), s.read_uint()
    return InputRGBImage(avg_rgb=avg, rows=rows, cols=cols)


def _read_loss_metric(s: _Stream) -> LossMetric:
    version = s.expect_string(("loss_metric_", "loss_metric_2"), "loss_metric")
    if version == "loss_metric_":  # old files: values were hard coded in dlib
        return LossMetric(margin=0.1, distance_threshold=0.75)
    return LossMetric(margin=s.read_float(), distance_threshold=s.read_float())


def _read_con(s: _Stream) -> Conv:
    version = s.expect_string(("con_4", "con_5", "con_6"), "con layer")
    params = s.read_tensor()
    num_filters = s.read_int()
    kernel = (s.read_int(), s.read_int())
    stride = (s.read_int(), s.read_int())
    padding = (s.read_int(), s.read_int())
    filter_shape, bias_shape = s.read_alias(), s.read_alias()
    for _ in range(4):  # learning-rate / weight-decay multipliers: training only
        s.read_float()
    use_bias = s.read_bool() if version in ("con_5", "con_6") else True
    use_relu = s.read_bool() if version == "con_6" else False
    if filter_shape[0] != num_filters or filter_shape[2:] != kernel:
        raise s.error(f"con filter shape {filter_shape} disagrees with {num_filters} x {kernel}")
    filters = _slice_params(s, params, 0, filter_shape)
    bias = _slice_params(s, params, filters.size, (num_filters,)) if use_bias else None
    del bias_shape
    return Conv(filters=filters, bias=bias, stride=stride, padding=padding, relu=use_relu)


def _read_affine(s: _Stream) -> Affine:
    version = s.read_string(max_len=256)
    if version in ("bn_con2", "bn_fc2"):
        raise s.error(f"affine layer stored as batch-norm ({version!r}) is not supported")
    if version not in ("affine_", "affine_2"):
        raise s.error(f"expected affine layer, found {version!r}")
    params = s.read_tensor()
    gamma_shape, beta_shape = s.read_alias(), s.read_alias()
    mode = s.read_int()
    disabled = s.read_bool() if version == "affine_2" else False
    gamma = _slice_params(s, params, 0, gamma_shape)
    beta = _slice_params(s, params, gamma.size, beta_shape)
    return Affine(gamma=gamma, beta=beta, conv_mode=(mode == _CONV_MODE), disabled=disabled)


def _read_relu(s: _Stream) -> Relu:
    version = s.expect_string(("relu_", "relu_2"), "relu layer")
    return Relu(disabled=s.read_bool() if version == "relu_2" else False)


def _read_pool(s: _Stream, op: str) -> Pool:
    s.expect_string((f"{op}_pool_2",), f"{op}_pool layer")
    window = (s.read_int(), s.read_int())
    stride = (s.read_int(), s.read_int())
    padding = (s.read_int(), s.read_int())
    return Pool(op=op, window=window, stride=stride, padding=padding)


def _read_fc(s: _Stream) -> FullyConnected:
    version = s.expect_string(("fc_2", "fc_3"), "fc layer")
    num_outputs, num_inputs = s.read_uint(), s.read_uint()
    params = s.read_tensor()
    weight_shape, _bias_shape = s.read_alias(), s.read_alias()
    bias_mode = s.read_int()
    for _ in range(4):
        s.read_float()
    use_bias = s.read_bool() if version == "fc_3" else True
    if weight_shape[:2] != (num_inputs, num_outputs):
        raise s.error(f"fc weight shape {weight_shape} disagrees with {num_inputs}x{num_outputs}")
    weights = _slice_params(s, params, 0, (num_inputs, num_outputs))
    has_bias = bias_mode != _FC_NO_BIAS and use_bias
    bias = _slice_params(s, params, weights.size, (num_outputs,)) if has_bias else None
    return FullyConnected(weights=weights, bias=bias)


def _read_add_prev(s: _Stream, tag: int) -> AddPrev:
    s.expect_string(("add_prev_",), "add_prev layer")
    return AddPrev(tag=tag)


_DETAIL_READERS: dict[str, Callable[[_Stream, Node], Layer]] = {
    "con": lambda s, n: _read_con(s),
    "affine": lambda s, n: _read_affine(s),
    "relu": lambda s, n: _read_relu(s),
    "max_pool": lambda s, n: _read_pool(s, "max"),
    "avg_pool": lambda s, n: _read_pool(s, "avg"),
    "fc": lambda s, n: _read_fc(s),
    "add_prev": lambda s, n: _read_add_prev(s, _need_tag(n)),
}


def _need_tag(node: Node) -> int:
    if node.tag is None:
        raise ValueError(f"network description: {node.kind} node needs a tag number")
    return node.tag


# --------------------------------------------------------------------------------------
# Wrappers (dlib/dnn/core.h)
# --------------------------------------------------------------------------------------


def _read_layer_trailer(s: _Stream, version: int, on_input: bool) -> None:
    """Skip the bookkeeping ``add_layer`` writes after a layer's details.

    Three bools (setup called, gradient stale, output disabled) and cached tensors that
    are empty in saved models but must still be consumed.
    """
    for _ in range(3):
        s.read_bool()
    s.read_tensor()  # x_grad
    s.read_tensor()  # cached_output
    if on_input:
        s.read_tensor()  # grad_final
        if version >= 3:
            s.read_uint()  # _sample_expansion_factor
    elif version >= 2:
        s.read_tensor()  # params_grad


def _read_chain(s: _Stream, spec: list[Node], i: int, out: list[Layer]) -> InputRGBImage:
    """Read ``spec[i:]`` (wrapper ``i`` and everything it wraps), appending layers to
    ``out`` in forward order; returns the input layer found at the bottom."""
    node = spec[i]
    if i + 1 >= len(spec):
        raise ValueError("network description must end with an input node")
    inner_is_input = spec[i + 1].kind == "input_rgb_image_sized"

    if node.kind in ("tag", "skip"):
        tag = _need_tag(node)
        if inner_is_input:
            if node.kind == "skip":
                raise ValueError("a skip layer cannot sit directly on the input")
            version = s.expect_int((1, 2), "add_tag_layer")
            inp = _read_input_rgb(s)
            s.read_tensor()  # cached_output
            s.read_tensor()  # grad_final
            s.read_bool()  # gradient_input_is_stale
            if version >= 2:
                s.read_uint()
        else:
            s.expect_int(1, f"add_{node.kind}_layer")
            inp = _read_chain(s, spec, i + 1, out)
        out.append(Tag(tag) if node.kind == "tag" else Skip(tag))
        return inp

    reader = _DETAIL_READERS.get(node.kind)
    if reader is None:
        raise ValueError(f"network description: unsupported node kind {node.kind!r}")
    if inner_is_input:
        version = s.expect_int((2, 3), "add_layer (on input)")
        inp = _read_input_rgb(s)
    else:
        version = s.expect_int((1, 2), "add_layer")
        inp = _read_chain(s, spec, i + 1, out)
    out.append(reader(s, node))
    _read_layer_trailer(s, version, on_input=inner_is_input)
    return inp


def _parse(s: _Stream, spec: list[Node]) -> DlibNet:
    layers: list[Layer] = []
    loss: LossMetric | None = None
    start = 0
    if spec and spec[0].kind == "loss_metric":
        s.expect_int(1, "add_loss_layer")
        loss = _read_loss_metric(s)
        start = 1
    inp = _read_chain(s, spec, start, layers)
    if s.pos != len(s.data):
        raise s.error(f"{len(s.data) - s.pos} unexpected trailing bytes after the network")
    return DlibNet(input=inp, loss=loss, layers=tuple(layers))


def _check_spec(spec: list[Node]) -> None:
    """Reject a malformed description before touching the file (a programming error,
    reported as plain ``ValueError`` rather than as a bad file)."""
    known = {*_DETAIL_READERS, "tag", "skip", "loss_metric", "input_rgb_image_sized"}
    if not spec or spec[-1].kind != "input_rgb_image_sized":
        raise ValueError("network description must end with an input_rgb_image_sized node")
    for i, node in enumerate(spec):
        if node.kind not in known:
            raise ValueError(f"network description: unsupported node kind {node.kind!r}")
        if node.kind in ("tag", "skip", "add_prev"):
            _need_tag(node)
        if node.kind == "loss_metric" and i != 0:
            raise ValueError("network description: loss node must come first")
        if node.kind == "input_rgb_image_sized" and i != len(spec) - 1:
            raise ValueError("network description: input node must come last")


def read_dlib_net(path: Path | str, spec: list[Node]) -> DlibNet:
    """Read a dlib DNN ``.dat`` file whose C++ type is described by ``spec``.

    Raises :class:`DlibFormatError` (a ``ValueError``) naming the file when it is
    missing, truncated, corrupt, or holds a different network.
    """
    _check_spec(spec)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot read dlib model file: {exc}") from exc
    stream = _Stream(data, str(path))
    try:
        return _parse(stream, spec)
    except DlibFormatError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. absurd sizes from garbage bytes
        raise stream.error(f"not a valid dlib network file: {exc}") from exc
