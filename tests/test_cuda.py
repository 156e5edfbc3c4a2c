"""The CUDA kernels: compile checks and launch plans (CPU), and kernel vs generic vs torch on a GPU (marker gpu)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import GRID, assert_close, case_id, make_case, random_params, run_rnn_xp

from rnn_xp.cuda import _launch

CUDA_DIR = Path(__file__).resolve().parents[1] / "rnn_xp" / "cuda"
H100 = dict(sm_count=132, shared_optin=227 * 1024)


# -- CPU: the sources compile, and the launch plans are what the kernels assume ---------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_cuda_source_compiles_without_warnings(source: str, arch: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    command = [
        nvcc, "-std=c++17", f"-arch={arch}", "-DRNN_XP_EXPLICIT_INSTANTIATION", "-Werror", "all-warnings",
        "-Xptxas=-Werror", f"-I{CUDA_DIR}", "-c", str(CUDA_DIR / source), "-o", str(tmp_path / "kernel.o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr


def test_cuda_sources_compile_with_nvrtc_as_cupy_will() -> None:
    """NVRTC (CuPy's run-time compiler) with the name expressions CuPy instantiates; needs libnvrtc."""
    tool = Path(__file__).resolve().parents[1] / "tools" / "nvrtc_check.py"
    nvrtc_check = _tool("nvrtc_check")
    if nvrtc_check.find_nvrtc() is None:
        pytest.skip("libnvrtc is not installed (pip install nvidia-cuda-nvrtc)")
    result = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 6 and "FAIL" not in result.stdout, result.stdout  # 3 sources x 2 archs


def _tool(name: str) -> Any:
    tools = Path(__file__).resolve().parents[1] / "tools"
    sys.path.insert(0, str(tools))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_no_kernel_spills_or_keeps_a_stack_frame(source: str) -> None:
    """ptxas -v on sm_90: every instance keeps its arrays in registers (a stack frame or spills would put W_hh's
    registers or the tiles' accumulators in local memory), and the register kernels use no more registers than
    the occupancy model of _launch.register_plan assumes."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    report = _tool("ptxas_report").compile_report(CUDA_DIR / source, "sm_90")
    assert report, "ptxas reported no kernel"
    for r in report:
        assert (r.stack_bytes, r.spill_stores, r.spill_loads) == (0, 0, 0), r
    if source == "rnn_registers.cu":
        assert len(report) == 2 * len(_launch.REGISTERS)
        for r in report:
            columns, batch_tile = (int(n) for n in r.kernel.rstrip(">").split(", ")[1:])
            assert r.registers <= _launch.REGISTERS[(columns, batch_tile)], r


def test_register_plan_at_the_issue_sizes() -> None:
    """H=128: one block of 128 threads a sample group, all 128 weights of a unit in registers, a wave at B=256;
    H=256 keeps half of its columns in shared memory; past 256, no plan."""
    one = _launch.register_plan(**H100, directions=1, hidden=128, batch=1)
    assert one is not None and (one.columns, one.batch_tile, one.threads, one.grid) == (128, 1, 128, 1)
    assert 0.1 < one.step_us < 0.3
    wide = _launch.register_plan(**H100, directions=1, hidden=128, batch=256)
    assert wide is not None and wide.grid <= H100["sm_count"] * wide.blocks_per_sm
    largest = _launch.register_plan(**H100, directions=2, hidden=256, batch=64)
    assert largest is not None and largest.columns == 128 and largest.shared_bytes >= 128 * 256 * 4
    assert _launch.register_plan(**H100, directions=1, hidden=257, batch=1) is None
    for hidden in (1, 31, 32, 33, 64, 65, 127, 128, 129, 255, 256):
        plan = _launch.register_plan(**H100, directions=2, hidden=hidden, batch=37)
        assert plan is not None and plan.threads >= hidden and plan.threads % 32 == 0 and plan.threads <= 256
        assert plan.groups * plan.batch_tile >= 37 > (plan.groups - 1) * plan.batch_tile
        assert plan.columns == _launch.register_columns(hidden) and plan.shared_bytes <= H100["shared_optin"]


def test_persistent_plan_fits_the_design_sizes_on_an_h100() -> None:
    for directions in (1, 2):
        for hidden in (1, 31, 32, 33, 128, 512, 1024):
            for batch in (1, 7, 64, 256):
                plan = _launch.persistent_plan(**H100, directions=directions, hidden=hidden, batch=batch, itemsize=4)
                assert plan is not None, (directions, hidden, batch)
                assert plan.grid == directions * plan.row_blocks * plan.batch_groups <= H100["sm_count"]
                assert plan.rows == 128 // plan.lane_split and plan.batch_tile == plan.lane_tile * plan.lane_split
                assert plan.row_blocks * plan.rows >= hidden > (plan.row_blocks - 1) * plan.rows
                tiles = plan.batch_groups * plan.tiles_per_group
                assert tiles * plan.batch_tile >= batch > (tiles - plan.tiles_per_group) * plan.batch_tile
                assert plan.padded >= hidden and plan.padded % (_launch.WARPS * 4) == 0
                assert plan.shared_bytes <= H100["shared_optin"]


def test_persistent_plan_prefers_one_block_per_group_when_it_fits() -> None:
    """H=128, B=1 fits one block: no inter-block waits; H=1024, B=64 spreads over most of the SMs."""
    small = _launch.persistent_plan(**H100, directions=1, hidden=128, batch=1, itemsize=4)
    assert small is not None and small.row_blocks == 1 and small.tiles_per_group == 1
    large = _launch.persistent_plan(**H100, directions=1, hidden=1024, batch=64, itemsize=4)
    assert large is not None and large.grid >= 100


def test_choose_plan_leaves_broadcast_bound_sizes_to_the_per_step_path() -> None:
    """At H=2048, B=256 every slice would re-read the whole 2 MB state each step: cuBLAS per step is cheaper."""
    common = dict(**H100, directions=1, itemsize=4)
    assert _launch.choose_plan(**common, hidden=2048, batch=256) is None
    assert _launch.persistent_plan(**common, hidden=2048, batch=256) is not None
    chosen = _launch.choose_plan(**common, hidden=1024, batch=64)
    assert chosen is not None and chosen.step_us < _launch.per_step_path_us(directions=1, hidden=1024, batch=64, itemsize=4)


def test_choose_plan_at_the_sizes_past_the_persistent_kernels() -> None:
    """The per-step path where W_hh does not fit on chip (H=4096) and where every slice would re-read a large state
    (H=2048, B>=64); the persistent kernels where they measured faster on an H100 (H=2048 at B<=8, H=1024 at B=64).
    The per-step estimates are the predictions tools/gpu_session.sh checks: ~12 us a step of host time, or the GPU's
    GEMM and W_hh read where longer."""
    common = dict(**H100, directions=1, itemsize=4)
    for hidden, batch in ((4096, 1), (4096, 64), (2048, 64), (2048, 256)):
        assert _launch.choose_plan(**common, hidden=hidden, batch=batch) is None, (hidden, batch)
    for hidden, batch in ((2048, 1), (2048, 8), (1024, 64), (512, 256)):
        assert _launch.choose_plan(**common, hidden=hidden, batch=batch) is not None, (hidden, batch)
    assert _launch.per_step_path_us(directions=1, hidden=4096, batch=1, itemsize=4) == pytest.approx(26.2, abs=0.1)
    assert _launch.per_step_path_us(directions=1, hidden=2048, batch=64, itemsize=4) == pytest.approx(22.0, abs=0.1)


def test_shared_bytes_counts_every_buffer() -> None:
    size = _launch.shared_bytes(rows=32, batch_tile=16, tiles_per_group=2, padded=1024, itemsize=4)
    assert size == ((32 + 16) * 1028 + 8 * 16 * 32 + 2 * 16 * 32) * 4


def largest_persistent_hidden(*, sm_count: int, shared_optin: int, directions: int, itemsize: int) -> int:
    """The largest H for which ``_launch.persistent_plan`` succeeds at batch 1 (it does for every smaller H)."""
    low, high = 1, 1 << 16
    while low < high:
        middle = (low + high + 1) // 2
        plan = _launch.persistent_plan(
            sm_count=sm_count, shared_optin=shared_optin, directions=directions, hidden=middle, batch=1,
            itemsize=itemsize,
        )
        if plan is None:
            high = middle - 1
        else:
            low = middle
    return low


def test_largest_persistent_hidden_is_the_boundary() -> None:
    for directions, itemsize in ((1, 4), (2, 4), (1, 8), (2, 8)):
        largest = largest_persistent_hidden(**H100, directions=directions, itemsize=itemsize)
        fits = _launch.persistent_plan(**H100, directions=directions, hidden=largest, batch=1, itemsize=itemsize)
        too_big = _launch.persistent_plan(
            **H100, directions=directions, hidden=largest + 1, batch=1, itemsize=itemsize
        )
        assert fits is not None and too_big is None
    assert largest_persistent_hidden(**H100, directions=1, itemsize=4) >= 2048
    assert largest_persistent_hidden(**H100, directions=2, itemsize=4) >= 1024


def test_step_grid_covers_every_output() -> None:
    for hidden, batch in ((1, 1), (33, 7), (4096, 256)):
        (blocks,) = _launch.step_grid(hidden=hidden, batch=batch)
        assert blocks * _launch.STEP_THREADS >= hidden * batch > (blocks - 1) * _launch.STEP_THREADS


def test_force_generic_environment_variable_is_read_at_import() -> None:
    code = "import rnn_xp._plan as b; print(b.FORCE_GENERIC)"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**os.environ, "RNN_XP_FORCE_GENERIC": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


@pytest.mark.backends("numpy")
def test_numpy_plan_is_unaffected_by_the_cuda_switch(xp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import rnn_xp._plan as plan
    from rnn_xp.loops import generic, numpy_inplace

    monkeypatch.setattr(plan, "FORCE_GENERIC", True)
    assert plan.choose_loop(xp, loop="numpy") is numpy_inplace
    assert plan.choose_loop(xp, loop="generic") is generic
    assert generic.TRUNCATES and not numpy_inplace.TRUNCATES


# -- GPU (the kernels against torch in float64 over the whole grid: test_functional.test_matches_torch_over_the_grid) --
@pytest.mark.backends("cupy")
def test_cupy_plan_picks_the_kernels(xp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import rnn_xp._plan as plan
    from rnn_xp.loops import generic
    from rnn_xp.loops.cuda import CudaLoop

    assert isinstance(plan.choose_loop(xp), CudaLoop)
    assert plan.choose_loop(xp, loop="generic") is generic
    monkeypatch.setattr(plan, "FORCE_GENERIC", True)
    assert plan.choose_loop(xp) is generic


@pytest.mark.backends("cupy")
@pytest.mark.parametrize("case", GRID[::7], ids=[case_id(c) for c in GRID[::7]])
def test_kernels_match_generic_path(case: dict[str, Any], xp: Any) -> None:
    data = make_case(case, seed=1)
    kernels = run_rnn_xp(xp, case, data)
    generic = run_rnn_xp(xp, case, data, loop="generic")
    for name in ("out", "h_n", "grad_x", "grad_h0"):
        assert_close(kernels[name], generic[name], rtol=1e-10)
    for name in generic["grads"]:
        assert_close(kernels["grads"][name], generic["grads"][name], rtol=1e-10)


def _compare_sizes(steps: int, batch: int, hidden: int, *, bidirectional: bool, dtype: str, rtol: float,
                   nonlinearity: str = "tanh", bias: bool = True, with_lengths: bool = True) -> None:
    """Kernel path on CuPy against the NumPy path, for one size (h0 included)."""
    import cupy

    from rnn_xp.functional import rnn_backward, rnn_forward

    rng = np.random.default_rng(hidden * 1000 + batch)
    params = random_params(rng, input_size=3, hidden_size=hidden, bidirectional=bidirectional, bias=bias, dtype=dtype)
    directions = 2 if bidirectional else 1
    x = rng.standard_normal((steps, batch, 3)).astype(dtype)
    h0 = rng.standard_normal((directions, batch, hidden)).astype(dtype)
    lengths = rng.integers(1, steps + 1, size=batch) if with_lengths else None
    grad_out = rng.standard_normal((steps, batch, directions * hidden)).astype(dtype)
    results = []
    for to in (np.asarray, cupy.asarray):
        out, h_n, cache = rnn_forward(
            to(x), {k: to(v) for k, v in params.items()}, to(h0), lengths=lengths, nonlinearity=nonlinearity
        )
        grad_x, grad_h0, grads = rnn_backward(cache, to(grad_out), to(h_n))
        results.append((out, h_n, grad_x, grad_h0, grads))
    cpu, gpu = results
    for a, b in zip(gpu[:4], cpu[:4], strict=True):
        assert_close(a, b, rtol=rtol)
    for name in cpu[4]:
        assert_close(gpu[4][name], cpu[4][name], rtol=rtol)


def _persistent_limit(directions: int, itemsize: int) -> int:
    import cupy

    attributes = cupy.cuda.Device().attributes
    return largest_persistent_hidden(
        sm_count=int(attributes["MultiProcessorCount"]),
        shared_optin=int(attributes["MaxSharedMemoryPerBlockOptin"]),
        directions=directions,
        itemsize=itemsize,
    )


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [1, 31, 32, 33, 127])
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_kernels_at_small_and_odd_sizes(hidden: int, batch: int, bidirectional: bool) -> None:
    _compare_sizes(5, batch, hidden, bidirectional=bidirectional, dtype="float64", rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_step_sequence(dtype: str) -> None:
    _compare_sizes(1, 3, 40, bidirectional=True, dtype=dtype, rtol=1e-5 if dtype == "float32" else 1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("past", [0, 1])
@pytest.mark.parametrize(
    ("bidirectional", "dtype"), [(False, "float32"), (True, "float32"), (False, "float64"), (True, "float64")]
)
def test_kernels_at_the_persistent_limit(past: int, bidirectional: bool, dtype: str) -> None:
    """At the largest H the persistent kernel takes, and one past it (the per-step kernels)."""
    hidden = _persistent_limit(2 if bidirectional else 1, np.dtype(dtype).itemsize) + past
    _compare_sizes(3, 2, hidden, bidirectional=bidirectional, dtype=dtype, rtol=1e-5 if dtype == "float32" else 1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(("nonlinearity", "bias", "with_lengths"), [("tanh", True, True), ("relu", False, False)])
def test_kernels_at_large_persistent_sizes(bidirectional: bool, nonlinearity: str, bias: bool,
                                           with_lengths: bool) -> None:
    """H=1024, B=64: several batch groups and slices, tiles per group > 1 with two directions."""
    _compare_sizes(6, 64, 1024, bidirectional=bidirectional, dtype="float32", rtol=1e-5, nonlinearity=nonlinearity,
                   bias=bias, with_lengths=with_lengths)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 5, 8, 9, 63, 64, 65, 300])
def test_kernels_around_batch_tile_limits(batch: int) -> None:
    """Batches around the kernels' batch tiles (multiples of 4 and 8, and one past), at a mid-size H."""
    _compare_sizes(4, batch, 96, bidirectional=True, dtype="float64", rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [1, 33, 256])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_step_path_on_small_sizes(hidden: int, bidirectional: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import rnn_xp.functional as functional
    from rnn_xp._arrays import is_cupy
    from rnn_xp._plan import choose_loop
    from rnn_xp.loops.cuda import CudaLoop

    def per_step_on_cupy(xp: Any, **options: Any) -> Any:
        return CudaLoop("per_step") if is_cupy(xp) else choose_loop(xp, **options)

    monkeypatch.setattr(functional, "choose_loop", per_step_on_cupy)
    _compare_sizes(6, 5, hidden, bidirectional=bidirectional, dtype="float64", rtol=1e-10)
    _compare_sizes(6, 5, hidden, bidirectional=bidirectional, dtype="float64", rtol=1e-10, nonlinearity="relu",
                   bias=False, with_lengths=False)


@pytest.mark.gpu
def test_float32_kernels_match_torch_cudnn() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    import cupy

    import rnn_xp

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    reference = torch.nn.RNN(16, 256, num_layers=2, bidirectional=True).cuda()
    rnn = rnn_xp.RNN(16, 256, num_layers=2, bidirectional=True, device="cuda")
    rnn.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((50, 8, 16)).astype(np.float32)
    out, h_n = rnn(cupy.asarray(x))
    expected, expected_h_n = reference(torch.from_numpy(x).cuda())
    assert_close(out, expected.detach().cpu(), rtol=1e-5)
    assert_close(h_n, expected_h_n.detach().cpu(), rtol=1e-5)


@pytest.mark.gpu
def test_kernels_are_deterministic() -> None:
    import cupy

    import rnn_xp

    rnn = rnn_xp.RNN(32, 512, num_layers=2, bidirectional=True, device="cuda", seed=0)
    x = cupy.asarray(np.random.default_rng(0).standard_normal((64, 16, 32)).astype(np.float32))
    grads = []
    for _ in range(2):
        out, _ = rnn(x, lengths=list(range(49, 65)))
        grad_x, _ = rnn.backward(cupy.ones_like(out))
        grads.append((cupy.asnumpy(grad_x), {k: cupy.asnumpy(v) for k, v in rnn.grads.items()}))
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    for name in grads[0][1]:
        np.testing.assert_array_equal(grads[0][1][name], grads[1][1][name])


_DETERMINISM_SCRIPT = """
import hashlib, numpy as np, cupy, rnn_xp
rnn = rnn_xp.RNN(32, 512, num_layers=2, bidirectional=True, device="cuda", seed=0)
x = cupy.asarray(np.random.default_rng(0).standard_normal((64, 16, 32)).astype(np.float32))
out, _ = rnn(x, lengths=list(range(49, 65)))
grad_x, _ = rnn.backward(cupy.ones_like(out))
digest = hashlib.sha256(cupy.asnumpy(grad_x).tobytes())
for name in sorted(rnn.grads):
    digest.update(cupy.asnumpy(rnn.grads[name]).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.gpu
def test_gradients_are_bit_identical_across_processes() -> None:
    """Two separate processes (fresh compile caches, fresh allocations) give byte-equal gradients."""
    digests = [
        subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT], capture_output=True, text=True, check=True)
        .stdout.strip()
        for _ in range(2)
    ]
    assert len(digests[0]) == 64 and digests[0] == digests[1], digests


@pytest.mark.gpu
def test_truncated_bptt_on_cupy_falls_back_to_the_generic_loop() -> None:
    import cupy

    from rnn_xp.functional import rnn_backward, rnn_forward

    rng = np.random.default_rng(0)
    params = random_params(rng, input_size=3, hidden_size=8)
    x, grad_out = rng.standard_normal((7, 2, 3)), rng.standard_normal((7, 2, 8))
    expected = rnn_backward(rnn_forward(x, params)[2], grad_out, bptt_truncate=2)
    cache = rnn_forward(cupy.asarray(x), {k: cupy.asarray(v) for k, v in params.items()})[2]
    got = rnn_backward(cache, cupy.asarray(grad_out), bptt_truncate=2)
    assert_close(got[0], expected[0], rtol=1e-12)
    for name in expected[2]:
        assert_close(got[2][name], expected[2][name], rtol=1e-12)



@pytest.mark.gpu
def test_cupy_lengths_are_taken_without_a_read_back() -> None:
    """A CuPy lengths array gives what the same lengths as a list give; a length outside [1, T] makes its sample NaN
    (the kernels check it: it is not read back to the host)."""
    import cupy

    from rnn_xp.functional import rnn_backward, rnn_forward

    rng = np.random.default_rng(3)
    params = {k: cupy.asarray(v) for k, v in random_params(rng, input_size=3, hidden_size=48, bidirectional=True,
                                                          dtype="float32").items()}
    x = cupy.asarray(rng.standard_normal((6, 4, 3)).astype(np.float32))
    grad_out = cupy.asarray(rng.standard_normal((6, 4, 96)).astype(np.float32))
    results = []
    for lengths in ([6, 2, 5, 1], cupy.asarray(np.array([6, 2, 5, 1], dtype=np.int64))):
        out, h_n, cache = rnn_forward(x, params, lengths=lengths)
        grad_x, grad_h0, _ = rnn_backward(cache, grad_out)
        results.append([cupy.asnumpy(a) for a in (out, h_n, grad_x, grad_h0)])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    out, h_n, cache = rnn_forward(x, params, lengths=cupy.asarray(np.array([6, 0, 7, 1], dtype=np.int32)))
    grad_x, _, _ = rnn_backward(cache, grad_out)
    for array in (out, h_n, grad_x):
        host = cupy.asnumpy(array)
        assert np.all(np.isnan(host[:, [1, 2]])) and np.all(np.isfinite(host[:, [0, 3]]))


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [1, 31, 33, 127, 128, 129, 255, 256])
@pytest.mark.parametrize("batch", [1, 7, 300])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_register_kernels_at_odd_and_limit_sizes(hidden: int, batch: int, bidirectional: bool) -> None:
    """The float32 register kernels (hidden <= 256), against the NumPy path in float32, lengths and h0 included;
    B=300 runs more blocks than fit at once at some sizes (waves)."""
    from rnn_xp.cuda import recurrence

    assert recurrence.kernels_for(2 if bidirectional else 1, hidden, batch, "float32").kind == "registers"
    _compare_sizes(5, batch, hidden, bidirectional=bidirectional, dtype="float32", rtol=2e-5,
                   nonlinearity="relu" if hidden % 2 else "tanh")


@pytest.mark.gpu
def test_register_kernels_are_deterministic() -> None:
    import cupy

    import rnn_xp

    rnn = rnn_xp.RNN(32, 128, num_layers=2, bidirectional=True, device="cuda", seed=0)
    x = cupy.asarray(np.random.default_rng(0).standard_normal((64, 40, 32)).astype(np.float32))
    runs = []
    for _ in range(2):
        out, h_n = rnn(x, lengths=list(range(25, 65)))
        grad_x, grad_h0 = rnn.backward(cupy.ones_like(out), cupy.ones_like(h_n))
        runs.append([cupy.asnumpy(a) for a in (out, h_n, grad_x, grad_h0, *rnn.grads.values())])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
