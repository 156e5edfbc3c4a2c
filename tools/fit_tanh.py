"""Fit the float32 tanh of the compiled loop: tanh(x) ~ x * P(x^2) / Q(x^2) on [0, 9], P of degree 4, Q of degree 4.

Linearised least squares (x P(s) - tanh(x) Q(s), divided by the previous Q), reweighted towards the maximum error
(Lawson's idea), on points clustered near 0 and spread to 9. Prints the coefficients pasted into
rnn_xp/loops/numba_kernels.py and the maximum error of the float32 evaluation against float64 tanh.

    python tools/fit_tanh.py
"""

from __future__ import annotations

import numpy as np

CLAMP = 9.0
NUMERATOR, DENOMINATOR = 5, 4  # coefficients of P; of Q beyond its constant 1


def fit(iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
    x = np.unique(np.concatenate([
        CLAMP * (1 - np.cos(np.linspace(0, np.pi / 2, 40001)[1:])), np.linspace(0, CLAMP, 20001)[1:],
    ]))
    s, t = x * x, np.tanh(x)
    previous_q, weights = np.ones_like(x), np.ones_like(x)
    for _ in range(iterations):
        odd = x[:, None] * s[:, None] ** np.arange(NUMERATOR)
        even = -(t[:, None] * s[:, None] ** np.arange(1, DENOMINATOR + 1))
        design = np.concatenate([odd, even], axis=1)
        scale = weights / previous_q
        solution = np.linalg.lstsq(design * scale[:, None], t * scale, rcond=None)[0]
        p, q = solution[:NUMERATOR], np.concatenate([[1.0], solution[NUMERATOR:]])
        previous_q = np.polyval(q[::-1], s)
        error = x * np.polyval(p[::-1], s) / previous_q - t
        weights = weights * np.sqrt(np.abs(error))
        weights /= weights.max()
    return p, q


def main() -> None:
    p, q = fit()
    print("P =", p.tolist())
    print("Q =", q.tolist())
    x = np.linspace(-CLAMP, CLAMP, 2_000_001).astype(np.float32)
    s = x * x
    num = np.zeros_like(s)
    for c in p.astype(np.float32)[::-1]:
        num = num * s + c
    den = np.zeros_like(s)
    for c in q.astype(np.float32)[::-1]:
        den = den * s + c
    print("max |error| in float32:", float(np.max(np.abs(x * num / den - np.tanh(x.astype(np.float64))))))


if __name__ == "__main__":
    main()
