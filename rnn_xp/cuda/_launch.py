"""Launch configuration: whether a layer fits the persistent kernels on this GPU, and how they split the work.

Pure arithmetic on the device's numbers, so it is tested without a GPU. The split is described in
``rnn_persistent.cu``: per direction, ``row_blocks`` slices of ``rows`` hidden units times ``batch_groups``
groups of ``tiles_per_group`` tiles of ``batch_tile`` samples; one block per (direction, group, slice), at most
one block per SM (each holds its slice of W_hh in shared memory for the whole launch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THREADS = 256  # 8 warps; matches __launch_bounds__(256, 1) and kWarps in the .cu files
WARPS = THREADS // 32
STEP_THREADS = 256  # the per-step epilogue kernels
LANE_SPLITS = (1, 2, 4, 8)  # LB: lanes of a warp along the batch (32 / LB along the hidden units)
LANE_TILES = (1, 2, 4)  # TB: samples per lane
# Cost-model constants, in SM cycles (fp32 FMA: 128 per cycle per SM; L2 -> SM: ~64 bytes per cycle).
FMA_PER_CYCLE = 128
L2_BYTES_PER_CYCLE = 64
TILE_OVERHEAD_CYCLES = 300  # three block barriers and the epilogue of one tile
GROUP_SYNC_CYCLES = 2500  # one step's arrival and wait through L2 when a group has several blocks


@dataclass(frozen=True)
class PersistentPlan:
    """One persistent launch: ``grid`` blocks of THREADS threads and ``shared_bytes`` of dynamic shared memory."""

    lane_tile: int  # TB
    lane_split: int  # LB
    rows: int  # hidden units per slice: 4 * 32 / LB
    batch_tile: int  # samples per tile: TB * LB
    row_blocks: int
    batch_groups: int
    tiles_per_group: int
    padded: int  # the reduction length (hidden) rounded up to a multiple of WARPS * 16 / itemsize
    grid: int
    shared_bytes: int
    cycles_per_step: float  # the cost model's estimate, for choosing between plans

    @property
    def template_args(self) -> tuple[int, int]:
        return self.lane_tile, self.lane_split


def shared_bytes(*, rows: int, batch_tile: int, tiles_per_group: int, padded: int, itemsize: int) -> int:
    """Weight slice + one tile + the warps' partial products + the backward's carried gradient (both kernels
    are launched with the larger, backward, size)."""
    stride = padded + 16 // itemsize
    elements = (rows + batch_tile) * stride + WARPS * batch_tile * rows + tiles_per_group * batch_tile * rows
    return elements * itemsize


def persistent_plan(
    *, sm_count: int, shared_optin: int, directions: int, hidden: int, batch: int, itemsize: int
) -> PersistentPlan | None:
    """The cheapest split (by :data:`FMA_PER_CYCLE`-based cost model) that fits, or None when none does."""
    vec = 16 // itemsize
    padded = math.ceil(hidden / (WARPS * vec)) * WARPS * vec
    fma_rate = FMA_PER_CYCLE * 4 / itemsize  # fp64 runs at half the fp32 rate
    best: PersistentPlan | None = None
    for lane_split in LANE_SPLITS:
        rows = 4 * 32 // lane_split
        row_blocks = math.ceil(hidden / rows)
        if directions * row_blocks > sm_count:
            continue
        for lane_tile in LANE_TILES:
            batch_tile = lane_tile * lane_split
            tiles = math.ceil(batch / batch_tile)
            groups = min(tiles, sm_count // (directions * row_blocks))
            tiles_per_group = math.ceil(tiles / groups)
            groups = math.ceil(tiles / tiles_per_group)
            size = shared_bytes(
                rows=rows, batch_tile=batch_tile, tiles_per_group=tiles_per_group, padded=padded, itemsize=itemsize
            )
            if size > shared_optin:
                continue
            per_tile = (
                batch_tile * rows * padded / fma_rate
                + batch_tile * padded * itemsize / L2_BYTES_PER_CYCLE
                + TILE_OVERHEAD_CYCLES
            )
            cycles = tiles_per_group * per_tile + (GROUP_SYNC_CYCLES if row_blocks * tiles_per_group > 1 else 0)
            grid = directions * groups * row_blocks
            plan = PersistentPlan(
                lane_tile, lane_split, rows, batch_tile, row_blocks, groups, tiles_per_group, padded, grid, size,
                cycles,
            )
            if best is None or (plan.cycles_per_step, plan.grid) < (best.cycles_per_step, best.grid):
                best = plan
    return best


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


def step_grid(*, batch: int, hidden: int) -> tuple[int]:
    """Grid of the per-step epilogue kernels: one thread per (sample, hidden unit)."""
    return (math.ceil(batch * hidden / STEP_THREADS),)
