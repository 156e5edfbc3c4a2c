"""The CuPy loop: :mod:`rnn_xp.cuda.recurrence`'s fused kernels as a :class:`rnn_xp.loops.TimeLoop`, with the
optional hooks ``forward_layer_into`` / ``backward_layer_into`` (the kernels write out, h_n and grad_h0 themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnn_xp.loops import LayerBackward, LayerBackwardInto, LayerForward, LayerForwardInto


@dataclass(frozen=True)
class CudaLoop:
    """``path``: "auto" (the launch model's choice: the register kernels for float32 with hidden <= 256, persistent
    kernels where they are expected to win, else per step), "registers", "persistent" (the shared-memory persistent
    kernels wherever they fit) or "per_step" (cuBLAS GEMM + fused epilogue at every size); see
    :mod:`rnn_xp.cuda.recurrence`.

    ``CHECKS_LENGTHS``: the kernels take a CuPy ``lengths`` whose values were not read back to the host, and make a
    sample whose length lies outside [1, T] NaN (see :func:`rnn_xp._checks.check_lengths`).
    """

    path: str = "auto"
    TRUNCATES = False
    CHECKS_LENGTHS = True

    def forward_layer(self, xp: Any, layer: LayerForward) -> list[Any]:
        from rnn_xp.cuda import recurrence

        return recurrence.forward_layer(layer, path=self.path)

    def forward_layer_into(self, xp: Any, layer: LayerForwardInto) -> tuple[list[Any], list[Any]]:
        from rnn_xp.cuda import recurrence

        return recurrence.forward_layer_into(layer, path=self.path)

    def backward_layer(self, xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]:
        from rnn_xp.cuda import recurrence

        if layer.truncate is not None:
            msg = "the CUDA kernels do not truncate BPTT; the plan routes truncation to the generic loop"
            raise ValueError(msg)
        return recurrence.backward_layer(layer, path=self.path)

    def backward_layer_into(self, xp: Any, layer: LayerBackwardInto) -> list[Any]:
        from rnn_xp.cuda import recurrence

        return recurrence.backward_layer_into(layer, path=self.path)
