"""Launch configuration: whether a layer fits the on-chip kernels on this GPU, and how they split the work.

Pure arithmetic on the device's numbers, so it is tested without a GPU.

- ``rnn_registers.cu`` (float32, hidden <= 256): :func:`register_plan`. One block per (direction, group of
  ``batch_tile`` samples), one thread per hidden unit holding ``columns`` weights of it in registers; blocks never
  wait for each other, so the grid may exceed what is resident (it then runs in waves).
- ``rnn_persistent.cu`` (the rest that fits): :func:`persistent_plan`. Per direction, ``row_blocks`` slices of
  ``rows`` hidden units times ``batch_groups`` groups of ``tiles_per_group`` tiles of ``batch_tile`` samples; one
  block per (direction, group, slice), at most one block per SM (each holds its slice of W_hh in shared memory for
  the whole launch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THREADS = 256  # 8 warps; matches __launch_bounds__(256, 1) and kWarps in the .cu files
WARPS = THREADS // 32
STEP_THREADS = 256  # the per-step epilogue kernels
REGISTERS_PER_SM = 65536  # sm_80 .. sm_90
LANE_SPLITS = (1, 2, 4, 8)  # LB: lanes of a warp along the batch (32 / LB along the hidden units)
LANE_TILES = (1, 2, 4)  # TB: samples per lane
# Cost model, in microseconds per time step, fitted to the persistent-vs-per-step probe on an H100
# (bench/results/nvidia-h100-80gb-hbm3-probe-crossover.json): a persistent step costs a fixed latency, plus the
# tiles a block walks through one after another, plus the state bytes that all blocks together read from L2 (every
# slice of a group reads the whole state: that broadcast, not the FMAs, dominates at large B*H), plus the FMAs.
STEP_FIXED_US = 3.0
TILE_US = 2.5  # each further tile of a group: its load latency, barriers and epilogue
L2_US_PER_MB = 0.7  # ~1.4 TB/s: many SMs reading the same lines
US_PER_BLOCK_FMA = 1 / (128 * 1980)  # one SM's fp32 FMAs at 128 per cycle and 1.98 GHz (fp64: half the rate)
# The per-step path: per step and direction, a cuBLAS GEMM (raw, on CuPy's cached handle) and an epilogue kernel,
# issued from a Python loop that does nothing else. Host time a step: a prediction, not yet measured (with
# cupy.matmul, a view and fresh scalars a step it was ~55 us on an H100: probe-overhead.txt, probe-crossover.json).
HOST_US_PER_STEP = 12.0
GEMM_FLOPS_PER_US = 40e6  # fp32 cuBLAS, ~40 TFLOP/s at large sizes
WEIGHT_BYTES_PER_US = 3e6  # W_hh streamed from HBM/L2 each step
KERNEL_GAP_US = 1.5  # on the GPU, per kernel: the start of a small kernel queued behind another


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
    step_us: float  # the cost model's estimate of one time step (both directions run at once)

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
    """The cheapest split (by the cost model above) that fits, or None when none does."""
    vec = 16 // itemsize
    padded = math.ceil(hidden / (WARPS * vec)) * WARPS * vec
    fma_scale = itemsize / 4  # fp64 runs at half the fp32 rate
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
            grid = directions * groups * row_blocks
            l2_megabytes = grid * tiles_per_group * batch_tile * padded * itemsize / 1e6
            fma_per_block = tiles_per_group * batch_tile * rows * padded * fma_scale
            step_us = (
                STEP_FIXED_US
                + TILE_US * (tiles_per_group - 1)
                + L2_US_PER_MB * l2_megabytes
                + US_PER_BLOCK_FMA * fma_per_block
            )
            plan = PersistentPlan(
                lane_tile, lane_split, rows, batch_tile, row_blocks, groups, tiles_per_group, padded, grid, size,
                step_us,
            )
            if best is None or (plan.step_us, plan.grid) < (best.step_us, best.grid):
                best = plan
    return best


def per_step_path_us(*, directions: int, hidden: int, batch: int, itemsize: int) -> float:
    """The cost model's estimate of one time step on the per-step path (directions run one after the other): the
    host's two launches, or the GPU's GEMM, W_hh read and two kernel starts, whichever is longer."""
    gemm = 2 * batch * hidden * hidden * (itemsize / 4) / GEMM_FLOPS_PER_US
    weights = hidden * hidden * itemsize / WEIGHT_BYTES_PER_US
    return directions * max(HOST_US_PER_STEP, gemm + weights + 2 * KERNEL_GAP_US)


def choose_plan(
    *, sm_count: int, shared_optin: int, directions: int, hidden: int, batch: int, itemsize: int
) -> PersistentPlan | None:
    """The persistent plan when it fits and the cost model expects it to beat the per-step path, else None."""
    plan = persistent_plan(
        sm_count=sm_count, shared_optin=shared_optin, directions=directions, hidden=hidden, batch=batch,
        itemsize=itemsize,
    )
    if plan is None:
        return None
    per_step = per_step_path_us(directions=directions, hidden=hidden, batch=batch, itemsize=itemsize)
    return plan if plan.step_us <= per_step else None


# The register kernels. Each thread keeps `columns` weights of its unit in registers (the smallest of these that
# covers hidden, else the largest: the columns past it sit in shared memory), for `batch_tile` samples at a time.
REGISTER_MAX_HIDDEN = 256
REGISTER_COLUMNS = (32, 64, 128)
REGISTER_BATCH_TILES = (1, 2, 4)
# Registers per thread, the larger of the forward's and the backward's, as ptxas (nvcc 13.0, sm_90) allocates them;
# tests/test_cuda.py recompiles and checks that none is above this table (the occupancy below would be optimistic).
REGISTERS = {(32, 1): 91, (32, 2): 149, (32, 4): 160, (64, 1): 146, (64, 2): 172, (64, 4): 194, (128, 1): 218,
             (128, 2): 236, (128, 4): 248}
THREADS_PER_SM = 2048
BLOCKS_PER_SM = 32
CLOCK_MHZ = 1980  # H100 / H200 boost clock
# Cycles of one step, the model behind register_plan (to be checked on a GPU: tools/gpu_session.sh predicts from it):
# a warp issues per sample 1.25 instructions a weight (an FMA, and a 16-byte shared load every 4 weights) plus 45
# for the epilogue (tanh, stores, selects), plus one shared load a weight past `columns`, plus 20 a step (barrier,
# loop); a sub-partition issues one instruction a cycle for all its warps. A step takes at least the dependent FMA
# chain of one sample (4 cycles an FMA, `columns / chains` deep) plus 150 cycles of shared-load, barrier and tanh
# latency.
REGISTER_EPILOGUE_INSTRUCTIONS = 45
REGISTER_STEP_INSTRUCTIONS = 20
REGISTER_LATENCY_CYCLES = 150


@dataclass(frozen=True)
class RegisterPlan:
    """One launch of the register kernels: ``grid`` blocks of ``threads`` threads, ``shared_bytes`` of dynamic shared
    memory; ``step_us`` the model's estimate of one time step (both directions at once)."""

    columns: int  # KR: weights of a unit held in registers
    batch_tile: int  # BG: samples of a block
    threads: int
    groups: int
    grid: int
    shared_bytes: int
    blocks_per_sm: int
    step_us: float

    @property
    def template_args(self) -> tuple[int, int]:
        return self.columns, self.batch_tile


def register_columns(hidden: int) -> int:
    """KR for ``hidden``: the smallest of :data:`REGISTER_COLUMNS` that covers it, else the largest."""
    return next((c for c in REGISTER_COLUMNS if c >= hidden), REGISTER_COLUMNS[-1])


def register_stride(hidden: int, columns: int) -> int:
    """Floats between the samples' rows of the shared state (as ``rnn_xp::register_stride`` in the kernel)."""
    return max(math.ceil(hidden / 4) * 4, columns)


def register_shared_bytes(*, hidden: int, columns: int, batch_tile: int, threads: int) -> int:
    """The state of a block's samples, twice, and the columns of W_hh past ``columns`` (float32)."""
    stride = register_stride(hidden, columns)
    return (2 * batch_tile * stride + (stride - columns) * threads) * 4


def register_plan(*, sm_count: int, shared_optin: int, directions: int, hidden: int, batch: int) -> RegisterPlan | None:
    """The fastest batch tile by the cost model above, or None where hidden is past :data:`REGISTER_MAX_HIDDEN`."""
    if hidden > REGISTER_MAX_HIDDEN:
        return None
    columns = register_columns(hidden)
    threads = math.ceil(hidden / 32) * 32
    stride = register_stride(hidden, columns)
    best: RegisterPlan | None = None
    for batch_tile in REGISTER_BATCH_TILES:
        size = register_shared_bytes(hidden=hidden, columns=columns, batch_tile=batch_tile, threads=threads)
        if size > shared_optin:
            continue
        registers = math.ceil(REGISTERS[(columns, batch_tile)] / 8) * 8  # allocated per warp in units of 8 a thread
        per_sm = min(REGISTERS_PER_SM // (registers * threads), (shared_optin + 1024) // max(size, 1),
                     THREADS_PER_SM // threads, BLOCKS_PER_SM)
        if per_sm < 1:
            continue
        groups = math.ceil(batch / batch_tile)
        grid = directions * groups
        waves = math.ceil(grid / (sm_count * per_sm))
        busiest = min(per_sm, math.ceil(grid / sm_count))  # blocks sharing the busiest SM in a wave
        warps_per_partition = math.ceil(busiest * threads / 32 / 4)
        far = stride - columns
        instructions = (batch_tile * (1.25 * stride + REGISTER_EPILOGUE_INSTRUCTIONS) + far
                        + REGISTER_STEP_INSTRUCTIONS)
        chains = 1 if batch_tile >= 4 else 4 // batch_tile
        latency = 4 * columns / chains + 4 * far + REGISTER_LATENCY_CYCLES
        step_us = waves * max(warps_per_partition * instructions, latency) / CLOCK_MHZ
        plan = RegisterPlan(columns, batch_tile, threads, groups, grid, size, per_sm, step_us)
        if best is None or plan.step_us < best.step_us:
            best = plan
    return best


def step_grid(*, batch: int, hidden: int) -> tuple[int]:
    """Grid of the per-step epilogue kernels: one thread per (sample, hidden unit)."""
    return (math.ceil(batch * hidden / STEP_THREADS),)
