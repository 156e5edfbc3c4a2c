"""The NumPy loop with each step's product written the other way round: ``W_hh h_{t-1}^T`` into an (H, B) buffer,
added back transposed.

Interface: :class:`rnn_xp.loops.TimeLoop`; the backward, and the rest of each forward step, are
:mod:`rnn_xp.loops.numpy_inplace`'s. Why: OpenBLAS runs some shapes much faster this way (at large H it multiplies
by W_hh as it is stored, and writes a short row per unit); which shapes is machine-specific, so the plan measures it
(``bench/results/*-loop-rule.md``).
"""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as compat_numpy  # arange(device=...) on NumPy 1.x too
import numpy as np

from rnn_xp.loops import LayerForward, numpy_inplace, step_mask, steps

TRUNCATES = False

backward_layer = numpy_inplace.backward_layer


def forward_layer(xp: Any, layer: LayerForward) -> list[np.ndarray]:
    num_steps, batch, hidden = layer.shape
    inside = step_mask(compat_numpy, layer.lengths, num_steps)
    outside = None if inside is None else ~inside
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
    ):
        if bias is not None:
            states += bias
        recurrent_t = np.empty((hidden, batch), dtype=states.dtype)
        previous = h0
        for t in steps(num_steps, direction):
            current = states[t]
            np.matmul(weight_hh, previous.T, out=recurrent_t)
            current += recurrent_t.T
            numpy_inplace.finish_step(current, previous, None if outside is None else outside[t], layer.nonlinearity)
            previous = current
    return layer.projections
