"""Clean-ups that make ONNX graphs exported by other tools load and run well on onnxruntime.

Models shipped in PyPI packages come as their exporter left them. The ones we use need:

* **dangling inputs dropped**: a graph may declare weight tensors as inputs that no node reads
  (SFace's int8 build declares 29); onnxruntime then demands them in every input feed;
* **initialisers removed from the inputs** (ONNX IR < 4 listed them there), so they are
  constants that can be folded, not overridable inputs;
* **constant sub-graphs folded**: block-quantised weights (``DequantizeLinear`` + ``Reshape``
  on initialisers) become the float tensors they stand for, computed once by ONNX's own
  reference implementation, so no runtime dequantises them on every call and older runtimes
  without blocked quantisation still load the graph;
* **a free batch dimension**, so several faces run in one call;
* **PRelu as depthwise convolutions**: onnxruntime runs convolutions in a blocked channel
  layout but PRelu outside it, so each PRelu costs two layout reorders and a slow broadcast.
  ``PRelu(y) = y + (1 - a) * Relu(-y)`` is exact and is two 1x1 depthwise convolutions (the
  second with the residual add fused), which stay in the blocked layout.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Node types that are folded when all their inputs are constants.
FOLDABLE = frozenset({"DequantizeLinear", "Reshape", "Constant", "Cast"})


def clean_graph(model: onnx.ModelProto, *, fold_constants: bool = True, batch: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` with every clean-up of the module docstring applied (PRelu apart)."""
    graph = model.graph
    initialisers = list(graph.initializer)
    nodes = list(graph.node)
    if fold_constants:
        nodes, folded = _fold(model, nodes, initialisers)
        initialisers += folded
    used = {name for node in nodes for name in node.input} | {output.name for output in graph.output}
    constants = {tensor.name for tensor in initialisers}
    inputs = [value for value in graph.input if value.name not in constants and value.name in used]
    initialisers = [tensor for tensor in initialisers if tensor.name in used]
    cleaned = helper.make_graph(nodes, graph.name, inputs, list(graph.output), initialisers)
    result = helper.make_model(cleaned, opset_imports=model.opset_import, ir_version=max(model.ir_version, 8))
    result.producer_name = "openfrt"
    if batch:
        _free_batch_dimension(result)
    return result


def has_dangling_inputs(model: onnx.ModelProto) -> bool:
    """True when the graph reads an input but also declares others that are neither read by a node
    nor initialisers (a graph that reads no input at all is left for its loader to refuse)."""
    used = {name for node in model.graph.node for name in node.input}
    constants = {tensor.name for tensor in model.graph.initializer}
    declared = [value.name for value in model.graph.input if value.name not in constants]
    return any(name in used for name in declared) and any(name not in used for name in declared)


def image_input(model: onnx.ModelProto) -> str:
    """Name of the graph's one real (non-constant) input."""
    constants = {tensor.name for tensor in model.graph.initializer}
    used = {name for node in model.graph.node for name in node.input}
    real = [value.name for value in model.graph.input if value.name not in constants and value.name in used]
    if len(real) != 1:
        raise ValueError(f"expected one image input, found {real}")
    return real[0]


def prelu_as_depthwise_convolutions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each per-channel PRelu rewritten (module docstring); exact."""
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type != "PRelu" or node.input[1] not in constants:
            nodes.append(node)
            continue
        x, output = node.input[0], node.output[0]
        slope = numpy_helper.to_array(constants[node.input[1]]).astype(np.float32).reshape(-1)
        channels = slope.size
        negate, keep = f"{output}/negate", f"{output}/one_minus_slope"
        added += [
            numpy_helper.from_array(-np.ones((channels, 1, 1, 1), np.float32), negate),
            numpy_helper.from_array((1.0 - slope).reshape(channels, 1, 1, 1), keep),
        ]
        nodes += [
            helper.make_node("Conv", [x, negate], [f"{output}/minus_x"], group=channels, kernel_shape=[1, 1]),
            helper.make_node("Relu", [f"{output}/minus_x"], [f"{output}/negative_part"]),
            helper.make_node("Conv", [f"{output}/negative_part", keep], [f"{output}/scaled"], group=channels, kernel_shape=[1, 1]),
            helper.make_node("Add", [x, f"{output}/scaled"], [output]),
        ]
    used = {name for node in nodes for name in node.input}
    initialisers = [tensor for tensor in [*model.graph.initializer, *added] if tensor.name in used]
    graph = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output), initialisers)
    result = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    result.producer_name = model.producer_name
    return result


def _fold(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], initialisers: list[onnx.TensorProto]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Split off the constant nodes and compute the constants the remaining nodes read."""
    from onnx.reference import ReferenceEvaluator

    constant_names = {tensor.name for tensor in initialisers}
    constant_nodes = []
    for node in nodes:
        if node.op_type in FOLDABLE and all(not name or name in constant_names for name in node.input):
            constant_nodes.append(node)
            constant_names.update(node.output)
    if not constant_nodes:
        return nodes, []
    remaining = [node for node in nodes if node not in constant_nodes]
    read = {name for node in remaining for name in node.input} | {output.name for output in model.graph.output}
    wanted = [name for node in constant_nodes for name in node.output if name in read]
    outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in wanted]
    subgraph = helper.make_graph(constant_nodes, "constants", [], outputs, initialisers)
    values = ReferenceEvaluator(helper.make_model(subgraph, opset_imports=model.opset_import)).run(None, {})
    return remaining, [numpy_helper.from_array(np.asarray(value), name) for name, value in zip(wanted, values)]


def _free_batch_dimension(model: onnx.ModelProto) -> None:
    """Make the first dimension of every graph input and output symbolic (``N``)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"
