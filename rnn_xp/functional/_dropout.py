"""Dropout masks between layers, drawn from a seed so a run can be repeated on any backend.

The Array API has no random numbers, so masks are drawn with NumPy's PCG64 on the host and copied to the
arrays' device once per forward: the same seed gives the same mask on NumPy, CuPy, torch or JAX.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def dropout_masks(
    xp: Any,
    probability: float,
    seed: int | None,
    *,
    num_masks: int,
    shape: tuple[int, int, int],
    dtype: Any,
    device: Any,
) -> list[Any]:
    """One scaled keep-mask per layer output that dropout applies to.

    Parameters
    ----------
    probability : float in (0, 1)
        Chance of zeroing each element; kept elements are scaled by 1 / (1 - probability).
    num_masks : int
        num_layers - 1 (dropout is applied to every layer's output but the last).
    shape : (T, B, D*H)

    Returns
    -------
    list of arrays of ``xp``, each of ``shape``, values in {0, 1 / (1 - probability)}.
    """
    rng = np.random.default_rng(seed)
    scale = 1.0 / (1.0 - probability)
    masks = []
    for _ in range(num_masks):
        keep = rng.random(shape) >= probability
        host = np.where(keep, scale, 0.0).astype(_numpy_dtype(dtype))
        masks.append(xp.asarray(host, device=device))
    return masks


def _numpy_dtype(dtype: Any) -> str:
    """'float32' or 'float64' for a dtype object of any namespace."""
    return "float32" if "32" in str(dtype) else "float64"
