"""The NumPy loop for float32 with the step's GEMM laid out the way OpenBLAS runs it fastest: ``W_hh h_{t-1}^T``
into an (H, B) buffer, then one fused numba pass that adds it, transposed, and applies the activation.

Interface: :class:`rnn_xp.loops.TimeLoop`; semantics, and the backward, are :mod:`rnn_xp.loops.numpy_inplace`'s
(only the forward's step differs). Why: OpenBLAS's sgemm is much faster when the product is written (H, B) instead of
(B, H) at small B and large H (float32, 2-core AMD EPYC, SkylakeX kernels, one step's GEMM, us):

========  ========  ==========  ======
B, H      (B, H)    (H, B)      ratio
========  ========  ==========  ======
4, 512    57        21          0.36
32, 1024  391       211         0.54
64, 256   32        22          0.68
512, 256  161       158         0.98
========  ========  ==========  ======

The transposed add costs ~0.5 ns an element (:func:`rnn_xp.loops._kernels.forward_step_transposed`), so where the
GEMM gains less than that (B=64, H=256 ran 1.3x slower in a layer) the plain loop stays: the cost model times both
on the machine (:mod:`rnn_xp._cost`) and :func:`rnn_xp._selection.select_loop` picks. Needs numba (the fused pass);
float64 keeps the plain loop (its dgemm gains less, and loses at B=64, H=2048).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_xp.loops import numpy_inplace, steps

TRUNCATES = False

backward_layer = numpy_inplace.backward_layer


def forward_layer(
    xp: Any,
    projections: list[np.ndarray],
    biases: list[np.ndarray | None],
    weights_hh: list[np.ndarray],
    h0s: list[np.ndarray],
    lengths: np.ndarray | None,
    nonlinearity: str,
) -> list[np.ndarray]:
    from rnn_xp.loops import _kernels

    num_steps, batch, hidden = projections[0].shape
    inside = np.full(batch, num_steps, dtype=np.int32) if lengths is None else np.asarray(lengths, np.int32)
    relu, fast_tanh = nonlinearity == "relu", projections[0].dtype == np.float32
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(projections, biases, weights_hh, h0s, strict=True)
    ):
        if bias is not None:
            states += bias
        recurrent_t = np.empty((hidden, batch), dtype=states.dtype)
        previous = h0
        for t in steps(num_steps, direction):
            np.matmul(weight_hh, previous.T, out=recurrent_t)
            _kernels.forward_step_transposed(states[t], recurrent_t, previous, inside, t, relu, fast_tanh)
            previous = states[t]
    return projections
