"""The NumPy loop with each step's product written the other way round: ``W_hh h_{t-1}^T`` into an (H, B) buffer,
then one fused numba pass that adds it, transposed, and applies the activation.

Interface: :class:`rnn_xp.loops.TimeLoop`; the backward, and everything but the forward step's product, are
:mod:`rnn_xp.loops.numpy_inplace`'s. Why: OpenBLAS runs some shapes much faster this way (at small B and large H it
multiplies by W_hh as it is stored, and writes a short row per unit); which shapes is machine-specific, so the plan
measures it (``bench/results/*-loop-rule.md``). Needs numba (the fused pass): the plan picks it only with numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_xp.loops import LayerForward, host_lengths, numpy_inplace, steps

TRUNCATES = False

backward_layer = numpy_inplace.backward_layer


def forward_layer(xp: Any, layer: LayerForward) -> list[np.ndarray]:
    from rnn_xp.loops import numba_kernels

    num_steps, batch, hidden = layer.shape
    lengths = host_lengths(layer.lengths, num_steps, batch)
    relu, fast_tanh = layer.nonlinearity == "relu", layer.projections[0].dtype == np.float32
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
    ):
        if bias is not None:
            states += bias
        weight = np.ascontiguousarray(weight_hh)
        recurrent_t = np.empty((hidden, batch), dtype=states.dtype)
        previous = h0
        for t in steps(num_steps, direction):
            np.matmul(weight, previous.T, out=recurrent_t)
            numba_kernels.forward_step_transposed(states[t], recurrent_t, previous, lengths, t, relu, fast_tanh)
            previous = states[t]
    return layer.projections
