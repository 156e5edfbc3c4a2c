"""The CuPy loop: :mod:`rnn_xp.cuda.recurrence`'s fused kernels as a :class:`rnn_xp.loops.TimeLoop`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CudaLoop:
    """``persistent=False`` takes the per-step path (cuBLAS GEMM + fused epilogue) at every size."""

    persistent: bool = True
    TRUNCATES = False

    def forward_layer(
        self,
        xp: Any,
        projections: list[Any],
        biases: list[Any | None],
        weights_hh: list[Any],
        h0s: list[Any],
        lengths: Any | None,
        nonlinearity: str,
    ) -> list[Any]:
        from rnn_xp.cuda import recurrence

        return recurrence.forward_layer(
            projections, biases, weights_hh, h0s, lengths, nonlinearity, persistent=self.persistent
        )

    def backward_layer(
        self,
        xp: Any,
        grad_states: list[Any],
        states: list[Any],
        weights_hh: list[Any],
        grad_h_ns: list[Any | None],
        lengths: Any | None,
        nonlinearity: str,
        truncate: int | None,
    ) -> tuple[list[Any], list[Any]]:
        from rnn_xp.cuda import recurrence

        if truncate is not None:
            msg = "the CUDA kernels do not truncate BPTT; the selection stage routes truncation to the generic loop"
            raise ValueError(msg)
        return recurrence.backward_layer(
            grad_states, states, weights_hh, grad_h_ns, lengths, nonlinearity, persistent=self.persistent
        )
