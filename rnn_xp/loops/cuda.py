"""The CuPy loop: :mod:`rnn_xp.cuda.recurrence`'s fused kernels as a :class:`rnn_xp.loops.TimeLoop`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnn_xp.loops import LayerBackward, LayerForward


@dataclass(frozen=True)
class CudaLoop:
    """``path``: "auto" (persistent kernels where the launch model expects them to win), "persistent" (wherever they
    fit) or "per_step" (cuBLAS GEMM + fused epilogue at every size); see :mod:`rnn_xp.cuda.recurrence`."""

    path: str = "auto"
    TRUNCATES = False

    def forward_layer(self, xp: Any, layer: LayerForward) -> list[Any]:
        from rnn_xp.cuda import recurrence

        return recurrence.forward_layer(layer, path=self.path)

    def backward_layer(self, xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]:
        from rnn_xp.cuda import recurrence

        if layer.truncate is not None:
            msg = "the CUDA kernels do not truncate BPTT; the plan routes truncation to the generic loop"
            raise ValueError(msg)
        return recurrence.backward_layer(layer, path=self.path)
