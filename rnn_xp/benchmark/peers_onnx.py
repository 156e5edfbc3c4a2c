"""ONNX Runtime as a CPU peer: each layer one ONNX ``RNN`` node, built with ``onnx.helper`` from torch-named weights.

ONNX's RNN op keeps the two biases apart like torch (``B = [Wb; Rb]``, shape (D, 2H)), takes ``sequence_lens`` for
variable lengths (outputs past a sequence's end are zero, the reverse direction starts at each sequence's end) and
runs both directions in one node. A stack of layers is a chain of nodes; between them the output
(T, D, B, H) is transposed and reshaped to the next layer's input (T, B, D*H).

Threads: the session uses every core (``intra_op_num_threads = os.cpu_count()``), as torch and NumPy's BLAS do.
float32 only: the CPU provider has no float64 RNN kernel. Forward only: ONNX Runtime's CPU provider has no training
graph for the RNN op, so ``train_step`` is unsupported.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.peers import Peer


class OnnxRuntime(Peer):
    """An ONNX graph of ``RNN`` nodes run by onnxruntime's CPU execution provider."""

    name = "onnxruntime"
    trains = False

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = dtype

    def unavailable(self, case: Case) -> str | None:
        if self.dtype != "float32":
            return f"onnxruntime's CPU RNN kernel is float32 only; got {self.dtype}"
        for module in ("onnx", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'rnn-xp[peers]')"
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        model = build_model(case, weights, x.dtype)
        self.session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.feeds: dict[str, np.ndarray] = {"x": np.ascontiguousarray(x)}
        lengths = case.lengths()
        if lengths is not None:
            self.feeds["sequence_lens"] = np.asarray(lengths, dtype=np.int32)

    def forward(self) -> None:
        self._out = self.session.run(["out"], self.feeds)[0]

    def train_step(self) -> None:
        msg = "onnxruntime runs forward only"
        raise NotImplementedError(msg)

    def output(self) -> np.ndarray:
        self.forward()
        return np.asarray(self._out)


def build_model(case: Case, weights: dict[str, np.ndarray], dtype: np.dtype[Any]) -> Any:
    """The float32 ONNX model: input ``x`` (T, B, I) [and ``sequence_lens`` (B,) int32], output ``out`` (T, B, D*H)."""
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT
    directions, hidden = case.directions, case.hidden
    suffixes = ("", "_reverse")[:directions]
    with_lengths = case.with_lengths
    initializers, nodes = [], []
    layer_input = "x"
    for layer in range(case.num_layers):

        def stacked(name: str, layer: int = layer) -> np.ndarray:
            return np.stack([weights[f"{name}_l{layer}{s}"] for s in suffixes]).astype(dtype)

        bias = np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1)
        for name, value in (("W", stacked("weight_ih")), ("R", stacked("weight_hh")), ("B", bias)):
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), f"{name}{layer}"))
        node_inputs = [layer_input, f"W{layer}", f"R{layer}", f"B{layer}"]
        node_inputs += ["sequence_lens"] if with_lengths else []
        nodes.append(
            helper.make_node(
                "RNN", node_inputs, [f"y{layer}"], hidden_size=hidden, activations=["Tanh"] * directions,
                direction="bidirectional" if directions == 2 else "forward",
            )
        )
        # Y is (T, D, B, H); the next layer (and the caller) want (T, B, D*H).
        nodes.append(helper.make_node("Transpose", [f"y{layer}"], [f"t{layer}"], perm=[0, 2, 1, 3]))
        initializers.append(numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"shape{layer}"))
        layer_input = "out" if layer == case.num_layers - 1 else f"in{layer + 1}"
        nodes.append(helper.make_node("Reshape", [f"t{layer}", f"shape{layer}"], [layer_input]))
    inputs = [helper.make_tensor_value_info("x", elem, ["T", "B", case.input_size])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    outputs = [helper.make_tensor_value_info("out", elem, ["T", "B", directions * hidden])]
    graph = helper.make_graph(nodes, "rnn_xp_peer", inputs, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
