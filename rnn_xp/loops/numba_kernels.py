"""The numba kernels of the compiled CPU loop (:mod:`rnn_xp.loops.compiled`); importing this module imports numba.

:func:`forward_direction` / :func:`backward_direction` run one direction of one layer over all T steps in one call,
so a step costs no Python or NumPy call. Each step ends in one activation-and-padding helper per direction
(:func:`_forward_row`, :func:`_backward_row`), so the semantics are written once: a padded step *selects* the previous
state (it is never multiplied in), relu keeps NaN, and where a gradient does not pass (padding; a relu unit that is
off) it is set to 0, never multiplied by 0.

The recurrent product is written as a sum of rows (``acc[b, :] += h[b, k] * W^T[k, :]``): the inner loop is an AXPY
over contiguous memory that LLVM vectorises without reassociating a sum (so no fast-math beyond FMA contraction: NaN
and inf behave as in NumPy, and the rounding does not depend on the vector width); the row of W^T is reused across
the batch. One sample a step is the exception (:func:`add_row_dots`): dot products with the rows of W_hh, whose sums
LLVM may reorder, so there the last bits follow the machine's vector width (the same on every run of one machine, and
for any memory alignment of the arrays).

float32 tanh is :func:`tanh_rational` (vectorisable; NumPy's float32 tanh is a scalar libm call in common builds);
float64 keeps libm's tanh. Compiled on first use, cached on disk (``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# tanh(x) ~ x * P(x^2) / Q(x^2) on (-9, 9), +-1 outside (float32 tanh is 1 to the last bit there). The
# coefficients are our own weighted least-squares fit (tools/fit_tanh.py); in float32 the maximum absolute error is
# 3.7e-7 (about 3 ulp near 1), with a relative error under 3e-7 near 0.
_CLAMP = np.float32(9.0)
_P = tuple(np.float32(c) for c in (
    0.9999999063389832, 0.1337320284115106, 0.0034865883562069234, 2.0471955926217294e-05, 1.3184442482216951e-08,
))
_Q = tuple(np.float32(c) for c in (
    1.0, 0.4670649970229555, 0.025842002816135475, 0.0003271396713459462, 7.702743036776261e-07,
))
_P0, _P1, _P2, _P3, _P4 = _P
_Q0, _Q1, _Q2, _Q3, _Q4 = _Q
_ONE32 = np.float32(1.0)

# error_model="numpy": a float division by zero gives inf/NaN instead of raising, so no check blocks vectorisation.
_jit = numba.njit(cache=True, fastmath={"contract"}, error_model="numpy", nogil=True)


@_jit
def tanh_rational(x: Any) -> Any:
    """float32 tanh by the rational fit above; +-1 from |x| >= 9 on; NaN stays NaN.

    Written with min/max and selects only (no branch) so that LLVM vectorises the loops that call it.
    """
    a = min(max(x, -_CLAMP), _CLAMP)
    s = a * a
    p = (((_P4 * s + _P3) * s + _P2) * s + _P1) * s + _P0
    q = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _Q0
    y = min(max(a * p / q, -_ONE32), _ONE32)
    y = _ONE32 if x >= _CLAMP else y
    y = -_ONE32 if x <= -_CLAMP else y
    return x if x != x else y


@_jit
def add_product(out: Any, left: Any, right: Any, first: int, stop: int) -> None:
    """out[b] += left[b] @ right for b in [first, stop): out (B, N), left (B, K), right (K, N); sums of rows of
    ``right``, blocked four samples by eight rows.

    The inner loop over N is contiguous in ``out`` and ``right`` and vectorises; each pass reads eight rows of
    ``right`` once for four samples (32 multiply-adds per 8 loads of ``right`` and 4 loads and stores of ``out``;
    faster than four by four from B=4 on).
    Samples left over (fewer than four) go through :func:`add_product_rows`.
    """
    inner, width = left.shape[1], right.shape[1]
    b = first
    while b + 4 <= stop:
        o0, o1, o2, o3 = out[b], out[b + 1], out[b + 2], out[b + 3]
        l0, l1, l2, l3 = left[b], left[b + 1], left[b + 2], left[b + 3]
        k = 0
        while k + 8 <= inner:
            r0, r1, r2, r3 = right[k], right[k + 1], right[k + 2], right[k + 3]
            r4, r5, r6, r7 = right[k + 4], right[k + 5], right[k + 6], right[k + 7]
            a00, a01, a02, a03 = l0[k], l0[k + 1], l0[k + 2], l0[k + 3]
            a04, a05, a06, a07 = l0[k + 4], l0[k + 5], l0[k + 6], l0[k + 7]
            a10, a11, a12, a13 = l1[k], l1[k + 1], l1[k + 2], l1[k + 3]
            a14, a15, a16, a17 = l1[k + 4], l1[k + 5], l1[k + 6], l1[k + 7]
            a20, a21, a22, a23 = l2[k], l2[k + 1], l2[k + 2], l2[k + 3]
            a24, a25, a26, a27 = l2[k + 4], l2[k + 5], l2[k + 6], l2[k + 7]
            a30, a31, a32, a33 = l3[k], l3[k + 1], l3[k + 2], l3[k + 3]
            a34, a35, a36, a37 = l3[k + 4], l3[k + 5], l3[k + 6], l3[k + 7]
            for j in range(width):
                w0, w1, w2, w3, w4, w5, w6, w7 = r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j], r7[j]
                o0[j] += ((a00 * w0 + a01 * w1) + (a02 * w2 + a03 * w3)) + (
                    (a04 * w4 + a05 * w5) + (a06 * w6 + a07 * w7)
                )
                o1[j] += ((a10 * w0 + a11 * w1) + (a12 * w2 + a13 * w3)) + (
                    (a14 * w4 + a15 * w5) + (a16 * w6 + a17 * w7)
                )
                o2[j] += ((a20 * w0 + a21 * w1) + (a22 * w2 + a23 * w3)) + (
                    (a24 * w4 + a25 * w5) + (a26 * w6 + a27 * w7)
                )
                o3[j] += ((a30 * w0 + a31 * w1) + (a32 * w2 + a33 * w3)) + (
                    (a34 * w4 + a35 * w5) + (a36 * w6 + a37 * w7)
                )
            k += 8
        while k < inner:
            r0 = right[k]
            a0, a1, a2, a3 = left[b, k], left[b + 1, k], left[b + 2, k], left[b + 3, k]
            for j in range(width):
                w0 = r0[j]
                o0[j] += a0 * w0
                o1[j] += a1 * w0
                o2[j] += a2 * w0
                o3[j] += a3 * w0
            k += 1
        b += 4
    if b < stop:
        add_product_rows(out, left, right, b, stop)


@_jit
def add_product_rows(out: Any, left: Any, right: Any, first: int, stop: int) -> None:
    """As :func:`add_product`, one sample at a time (four rows of ``right`` per pass): for B < 4 and leftovers."""
    inner = left.shape[1]
    width = right.shape[1]
    k = 0
    while k + 4 <= inner:
        r0, r1, r2, r3 = right[k], right[k + 1], right[k + 2], right[k + 3]
        for b in range(first, stop):
            h0, h1, h2, h3 = left[b, k], left[b, k + 1], left[b, k + 2], left[b, k + 3]
            row = out[b]
            for j in range(width):
                row[j] += (h0 * r0[j] + h1 * r1[j]) + (h2 * r2[j] + h3 * r3[j])
        k += 4
    while k < inner:
        r0 = right[k]
        for b in range(first, stop):
            h0 = left[b, k]
            row = out[b]
            for j in range(width):
                row[j] += h0 * r0[j]
        k += 1


# Only for the dot products below: the sum over k may be reordered (vector partial sums, then a reduction), so its
# rounding depends on the vector width LLVM picks for the machine (the same on every run of one machine; numba's
# on-disk cache is per CPU). NaN and inf still propagate (no "nnan"/"ninf" flags).
_jit_reordered_sums = numba.njit(cache=True, fastmath={"contract", "reassoc"}, error_model="numpy", nogil=True)


@_jit_reordered_sums
def add_row_dots(out: Any, left: Any, weight: Any, first: int, stop: int) -> None:
    """out[b] += left[b] @ weight^T for b in [first, stop): out (B, N), left (B, K), weight (N, K) itself, one
    contiguous dot product per row of ``weight``, four rows at a time (each load of ``left`` used four times).

    For one sample a step: no transpose of W_hh is needed, and the dot products vectorise along k (with the sums
    reordered, above); faster than the sums of rows of W_hh^T (:func:`add_product_rows`) for one sample up to
    H=512. Each sample reads all of ``weight``: for more samples the rows of W_hh^T, read once for four samples,
    win."""
    rows, inner = weight.shape
    zero = out.dtype.type(0)  # in out's dtype (a Python 0 would make float32 sums float64)
    for b in range(first, stop):
        vector, row = left[b], out[b]
        j = 0
        while j + 4 <= rows:
            w0, w1, w2, w3 = weight[j], weight[j + 1], weight[j + 2], weight[j + 3]
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for k in range(inner):
                x = vector[k]
                a0 += w0[k] * x
                a1 += w1[k] * x
                a2 += w2[k] * x
                a3 += w3[k] * x
            row[j] += a0
            row[j + 1] += a1
            row[j + 2] += a2
            row[j + 3] += a3
            j += 4
        while j < rows:
            w0 = weight[j]
            a0 = zero
            for k in range(inner):
                a0 += w0[k] * vector[k]
            row[j] += a0
            j += 1


@_jit
def _forward_row(out: Any, before: Any, inside: bool, relu: bool, fast_tanh: bool) -> None:
    """One sample's hidden units after the recurrent product: out (H,) holds the pre-activation on entry and h_t on
    return; where the step is padding (not ``inside``) the previous state ``before`` (H,) is selected instead."""
    hidden = out.shape[0]
    if not inside:
        for j in range(hidden):
            out[j] = before[j]
        return
    if relu:
        for j in range(hidden):
            value = out[j]
            out[j] = value if not value < 0 else 0
    elif fast_tanh:
        for j in range(hidden):
            out[j] = tanh_rational(out[j])
    else:
        for j in range(hidden):
            out[j] = np.tanh(out[j])


@_jit
def _backward_row(out: Any, arrived: Any, held: Any, state: Any, inside: bool, relu: bool, one: Any) -> None:
    """One sample's pre-activation gradient of one step: out (H,) = act'(state) * (arrived + held), set to 0 on
    padding (not ``inside``) and, for relu, where the unit is off (state <= 0). ``one`` is 1 in the arrays' dtype
    (a Python 1 would promote float32 arithmetic to float64)."""
    zero = one - one
    hidden = out.shape[0]
    if not inside:
        for j in range(hidden):
            out[j] = zero
    elif relu:
        for j in range(hidden):
            out[j] = zero if state[j] <= 0 else arrived[j] + held[j]
    else:
        for j in range(hidden):
            out[j] = (one - state[j] * state[j]) * (arrived[j] + held[j])


@_jit
def forward_direction(
    states: Any, bias: Any, weight: Any, h0: Any, lengths: Any, relu: bool, reverse: bool, fast_tanh: bool,
    dots: bool,
) -> None:
    """One direction in place: states (T, B, H) holds x_t W_ih^T on entry and h_t on return.

    bias (H,) = b_ih + b_hh (zeros without bias); weight (H, H), contiguous: W_hh^T (sums of its rows,
    :func:`add_product`), or with ``dots`` W_hh itself (dot products with its rows, :func:`add_row_dots`: for one
    sample); h0 (B, H); lengths (B,) int32 (T for every sample without lengths).
    """
    num_steps, batch, hidden = states.shape
    for i in range(num_steps):
        t = num_steps - 1 - i if reverse else i
        current = states[t]
        if i == 0:
            previous = h0
        else:
            previous = states[t + 1] if reverse else states[t - 1]
        for b in range(batch):
            for j in range(hidden):
                current[b, j] += bias[j]
        if dots:
            add_row_dots(current, previous, weight, 0, batch)
        else:
            add_product(current, previous, weight, 0, batch)
        for b in range(batch):
            _forward_row(current[b], previous[b], t < lengths[b], relu, fast_tanh)


@_jit
def backward_direction(
    grad_preacts: Any, grad_states: Any, states: Any, weight_hh: Any, carry: Any, lengths: Any, relu: bool,
    reverse: bool, one: Any,
) -> None:
    """One direction's BPTT: grad_states, states (T, B, H) contiguous; weight_hh (H, H); carry (B, H), the gradient
    arriving from after the last step (grad_h_n or zeros), updated in place to the gradient of h0. Writes
    grad_preacts (T, B, H); on padding the carry passes unchanged to the step before."""
    zero = one - one
    num_steps, batch, _ = states.shape
    product = np.empty_like(carry)
    for i in range(num_steps):
        t = i if reverse else num_steps - 1 - i
        grad = grad_preacts[t]
        for b in range(batch):
            _backward_row(grad[b], grad_states[t, b], carry[b], states[t, b], t < lengths[b], relu, one)
        product[:] = zero
        add_product(product, grad, weight_hh, 0, batch)
        for b in range(batch):
            if t < lengths[b]:
                carry[b] = product[b]
