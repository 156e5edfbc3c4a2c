"""Launch configuration: whether a layer fits the persistent kernel on this GPU, and how it is tiled.

Pure arithmetic on the device's numbers, so it is tested without a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THREADS = 256  # 8 warps; matches __launch_bounds__(256) in the .cu files
TILE = 4  # kTile in rnn_common.cuh
WARPS = THREADS // 32


@dataclass(frozen=True)
class PersistentPlan:
    """One block per SM: ``grid`` blocks, each owning ``rows_per_block`` hidden units of one direction."""

    grid: int
    rows_per_block: int
    batch_tile: int
    shared_bytes: int


def persistent_plan(
    *, sm_count: int, shared_optin: int, directions: int, hidden: int, batch: int, itemsize: int
) -> PersistentPlan | None:
    """Tiling of the persistent kernel, or None when W_hh does not fit in the SMs' shared memory.

    Each direction gets ``sm_count // directions`` blocks; a block holds ``ceil(H / blocks)`` rows of W_hh
    (``rows * H * itemsize`` bytes) plus at least one row of the previous state (``H * itemsize``), all within
    the per-block opt-in shared memory. The batch is staged in tiles as large as the remaining memory allows.
    """
    blocks_per_direction = sm_count // directions
    if blocks_per_direction < 1:
        return None
    rows = math.ceil(hidden / blocks_per_direction)
    row_bytes = hidden * itemsize
    free = shared_optin - rows * row_bytes
    batch_tile = min(batch, free // row_bytes) if free > 0 else 0
    if batch_tile < 1:
        return None
    if batch_tile < batch and batch_tile >= TILE:
        batch_tile -= batch_tile % TILE
    grid = directions * math.ceil(hidden / rows)
    return PersistentPlan(grid, rows, batch_tile, (rows + batch_tile) * row_bytes)


def largest_persistent_hidden(*, sm_count: int, shared_optin: int, directions: int, itemsize: int) -> int:
    """The largest H for which :func:`persistent_plan` succeeds at batch 1 (it does for every smaller H)."""
    low, high = 1, 1 << 16
    while low < high:
        middle = (low + high + 1) // 2
        plan = persistent_plan(
            sm_count=sm_count, shared_optin=shared_optin, directions=directions, hidden=middle, batch=1,
            itemsize=itemsize,
        )
        if plan is None:
            high = middle - 1
        else:
            low = middle
    return low


def step_grid(*, hidden: int, batch: int) -> tuple[int, int]:
    """Grid of the per-step kernels: x over groups of TILE hidden units (TILE per warp), y over batch groups."""
    return math.ceil(hidden / (TILE * WARPS)), math.ceil(batch / TILE)
