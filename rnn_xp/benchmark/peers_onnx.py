"""ONNX Runtime as a CPU peer: the graph :func:`rnn_xp.onnx.export` writes, each layer one ONNX ``RNN`` node.

ONNX's RNN op keeps the two biases apart like torch, takes ``sequence_lens`` for variable lengths and runs both
directions in one node; see :mod:`rnn_xp.onnx` for the graph.

Threads: the session uses every core (``intra_op_num_threads = os.cpu_count()``), as torch and NumPy's BLAS do.
float32 only: the CPU provider has no float64 RNN kernel. Forward only: ONNX Runtime's CPU provider has no training
graph for the RNN op, so ``train_step`` is unsupported.
"""

from __future__ import annotations

import importlib.util
import io
import os

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
                return f"{module} is not installed (pip install {module})"
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        import onnxruntime

        import rnn_xp
        from rnn_xp.onnx import export

        rnn = rnn_xp.RNN(case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional,
                         dtype=str(x.dtype))
        rnn.load_state_dict(weights)
        model = io.BytesIO()
        export(rnn, model, with_lengths=case.with_lengths)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model.getvalue(), options, providers=["CPUExecutionProvider"])
        self.feeds: dict[str, np.ndarray] = {"x": np.ascontiguousarray(x)}
        lengths = case.lengths()
        if lengths is not None:
            self.feeds["lengths"] = np.asarray(lengths, dtype=np.int64)

    def forward(self) -> None:
        self._out = self.session.run(["out"], self.feeds)[0]

    def train_step(self) -> None:
        msg = "onnxruntime runs forward only"
        raise NotImplementedError(msg)

    def output(self) -> np.ndarray:
        self.forward()
        return np.asarray(self._out)

