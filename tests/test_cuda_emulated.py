"""The CUDA kernels on CPU fibers (tests/cuda_emulation): rnn_xp/cuda/recurrence.py, unchanged, with its kernels
compiled by g++ from the unmodified .cu sources, against the NumPy loop. Marker ``cuda_emulated``; needs g++."""

from __future__ import annotations

import itertools
import shutil
from typing import Any

import numpy as np
import pytest
from cuda_emulation import launcher
from cuda_emulation.harness import DEVICES, Emulated

from rnn_xp.cuda import _launch, _module, recurrence
from rnn_xp.loops import LayerBackward, LayerForward, numpy_inplace
from rnn_xp.loops.cuda import CudaLoop

pytestmark = [
    pytest.mark.cuda_emulated,
    pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulation needs g++"),
]


@pytest.fixture(params=list(DEVICES))
def emulated(request: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield Emulated(monkeypatch, request.param)
    recurrence.clear_caches()


def _problem(steps: int, batch: int, hidden: int, directions: int, *, bias: bool, lengths: bool, dtype: str,
             seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(hidden)

    def draw(*shape: int) -> np.ndarray:
        return rng.uniform(-1, 1, shape).astype(dtype)

    lengths_array = rng.integers(1, steps + 1, size=batch).astype(np.int32) if lengths else None
    return dict(
        projections=[draw(steps, batch, hidden) for _ in range(directions)],
        biases=[draw(hidden) if bias else None for _ in range(directions)],
        weights=[(draw(hidden, hidden) * (2 * scale)).astype(dtype) for _ in range(directions)],
        h0s=[draw(batch, hidden) for _ in range(directions)],
        lengths=lengths_array,
        grad_states=[draw(steps, batch, hidden) for _ in range(directions)],
        grad_h_ns=[draw(batch, hidden) if seed % 2 else None for _ in range(directions)],
    )


def _run_both(emulated: Emulated, problem: dict[str, Any], nonlinearity: str, *,
              path: str = "auto") -> tuple[list[Any], list[Any]]:
    """(kernel results, NumPy results): forward states, then backward grad_preacts and grad_h0s."""
    results = []
    for module, on in ((CudaLoop(path), emulated.on_device), (numpy_inplace, np.array)):
        lengths = None if problem["lengths"] is None else on(problem["lengths"])
        states = module.forward_layer(None, LayerForward(
            [on(p) for p in problem["projections"]], [None if b is None else on(b) for b in problem["biases"]],
            [on(w) for w in problem["weights"]], [on(h) for h in problem["h0s"]], lengths, nonlinearity,
        ))
        grad_preacts, grad_h0s = module.backward_layer(None, LayerBackward(
            [on(g) for g in problem["grad_states"]], [on(np.asarray(s)) for s in states],
            [on(w) for w in problem["weights"]], [None if g is None else on(g) for g in problem["grad_h_ns"]],
            lengths, nonlinearity,
        ))
        results.append([np.asarray(a) for a in [*states, *grad_preacts, *grad_h0s]])
    return results[0], results[1]


def _assert_close(got: list[np.ndarray], expected: list[np.ndarray], dtype: str) -> None:
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.shape == b.shape
        assert np.all(np.isfinite(a)), f"output {index} has unwritten (NaN) elements"
        scale = max(1.0, float(np.max(np.abs(b))))
        assert float(np.max(np.abs(a - b))) <= rtol * scale, (index, float(np.max(np.abs(a - b))))


# A covering set: every (T, B, H) with the other switches rotating through their values.
_SIZES = list(itertools.product((1, 2, 5), (1, 3, 6), (1, 5, 13, 33)))
CASES = [
    dict(steps=t, batch=b, hidden=h, directions=1 + (i % 2), nonlinearity=("tanh", "relu")[(i // 2) % 2],
         bias=bool((i // 4) % 2), lengths=bool((i // 3) % 2), dtype=("float64", "float32")[(i // 5) % 2])
    for i, (t, b, h) in enumerate(_SIZES)
]


def case_id(case: dict[str, Any]) -> str:
    flags = [case["nonlinearity"], case["dtype"][5:], "bi" if case["directions"] == 2 else "uni"]
    flags += ["bias"] * case["bias"] + ["lengths"] * case["lengths"]
    return f"T{case['steps']}-B{case['batch']}-H{case['hidden']}-" + "-".join(flags)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_kernels_match_the_numpy_loop(case: dict[str, Any], emulated: Emulated) -> None:
    problem = _problem(case["steps"], case["batch"], case["hidden"], case["directions"], bias=case["bias"],
                       lengths=case["lengths"], dtype=case["dtype"], seed=len(case_id(case)))
    got, expected = _run_both(emulated, problem, case["nonlinearity"])
    _assert_close(got, expected, case["dtype"])
    kind = recurrence.kernels_for(case["directions"], case["hidden"], case["batch"], case["dtype"], "auto").kind
    assert (kind == "registers") == (case["dtype"] == "float32")
    launches = {"registers": 1, "persistent": 1, "per_step": case["steps"] * case["directions"]}
    names = {"registers": "rnn_forward_registers", "persistent": "rnn_forward_persistent",
             "per_step": "rnn_forward_step"}
    assert {name: emulated.launched[name] for name in names.values()} == {
        names[k]: launches[k] if k == kind else 0 for k in names}, emulated.launched


@pytest.mark.parametrize("case", CASES[1::2], ids=[case_id(c) for c in CASES[1::2]])
def test_persistent_kernels_match_the_numpy_loop(case: dict[str, Any], emulated: Emulated) -> None:
    """The shared-memory persistent kernels forced, in both types (float32 layers of these sizes otherwise run on the
    register kernels)."""
    problem = _problem(case["steps"], case["batch"], case["hidden"], case["directions"], bias=case["bias"],
                       lengths=case["lengths"], dtype=case["dtype"], seed=7)
    got, expected = _run_both(emulated, problem, case["nonlinearity"], path="persistent")
    _assert_close(got, expected, case["dtype"])
    kind = recurrence.kernels_for(case["directions"], case["hidden"], case["batch"], case["dtype"], "persistent").kind
    assert kind == "persistent" or emulated.cupy.cuda.Device().sm_count == 4  # only the tight device runs out
    launched = emulated.launched["rnn_forward_persistent"], emulated.launched["rnn_backward_persistent"]
    assert launched == ((1, 1) if kind == "persistent" else (0, 0))


@pytest.mark.parametrize("case", CASES[::3], ids=[case_id(c) for c in CASES[::3]])
def test_per_step_path_matches_the_numpy_loop(case: dict[str, Any], emulated: Emulated) -> None:
    problem = _problem(case["steps"], case["batch"], case["hidden"], case["directions"], bias=case["bias"],
                       lengths=case["lengths"], dtype=case["dtype"], seed=3)
    got, expected = _run_both(emulated, problem, case["nonlinearity"], path="per_step")
    _assert_close(got, expected, case["dtype"])
    assert emulated.launched["rnn_forward_persistent"] == 0
    assert emulated.launched["rnn_backward_step"] == (case["steps"] + 1) * case["directions"]


TILINGS = [  # (directions, hidden, batch, dtype) on the tight device, and the split each must produce
    (1, 33, 6, "float32", dict(row_blocks=2, batch_groups=2, tiles_per_group=1)),
    (2, 33, 6, "float32", dict(row_blocks=2, batch_groups=1, tiles_per_group=2)),
    (1, 13, 6, "float32", dict(row_blocks=1, batch_groups=3, tiles_per_group=1)),
    (1, 13, 3, "float64", dict(row_blocks=1, batch_groups=1, tiles_per_group=1)),
]


@pytest.mark.parametrize(("directions", "hidden", "batch", "dtype", "split"), TILINGS)
def test_tilings_of_the_tight_device(directions: int, hidden: int, batch: int, dtype: str, split: dict[str, int],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Several slices per direction, several groups, several tiles per group, a tile narrower than the batch, and
    one block owning everything (state kept in shared memory) all happen, and all match NumPy."""
    emulated = Emulated(monkeypatch, "tight")
    plan = recurrence.kernels_for(directions, hidden, batch, dtype, "persistent").plan
    assert plan is not None
    assert {key: getattr(plan, key) for key in split} == split
    problem = _problem(5, batch, hidden, directions, bias=True, lengths=True, dtype=dtype, seed=11)
    got, expected = _run_both(emulated, problem, "tanh", path="persistent")
    _assert_close(got, expected, dtype)


def test_persistent_path_is_deterministic_across_thread_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    """The threads of a block run in different orders between barriers: results are bitwise equal."""
    emulated = Emulated(monkeypatch, "tight")
    problem = _problem(5, 6, 33, 2, bias=True, lengths=True, dtype="float32", seed=5)
    runs = []
    for seed in (0, 1, 2):
        monkeypatch.setattr(launcher, "SHUFFLE_SEED", seed)
        runs.append(_run_both(emulated, problem, "tanh", path="persistent")[0])
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_wrong_argument_kind_is_refused() -> None:
    """A Python int where the kernel takes an int (CuPy would pass 64 bits), or an int where it takes a pointer."""
    forward = launcher.kernel("rnn_forward_step", "float32")
    assert forward.signature == "ppppppppp" + "iiiiiii"
    arrays = [np.zeros(4, np.float32)] * 8
    sizes = (np.int32(0), np.int32(1), np.int32(0), np.int32(1), np.int32(1), np.int32(4), np.int32(0))
    good = (*arrays, None, *sizes)  # None: a null pointer (no lengths), as CuPy passes it
    forward((1,), (_launch.STEP_THREADS,), good)
    with pytest.raises(TypeError, match=r"argument 11 must be numpy.int32; got int"):
        forward((1,), (_launch.STEP_THREADS,), (*good[:11], 0, *good[12:]))
    with pytest.raises(TypeError, match=r"argument 5 must be a C-contiguous array or None; got int32"):
        forward((1,), (_launch.STEP_THREADS,), (*good[:5], np.int32(1), *good[6:]))


def test_a_persistent_kernel_refuses_a_grid_other_than_its_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clamped cooperative grid would leave slices uncomputed and groups waiting: the kernel traps instead."""
    emulated = Emulated(monkeypatch, "tight")
    plan = recurrence.kernels_for(1, 33, 6, "float32", "persistent").plan
    assert plan is not None and plan.grid > 1
    smaller = _launch.PersistentPlan(**{**plan.__dict__, "grid": plan.grid - 1})
    recurrence.clear_caches()
    monkeypatch.setattr(recurrence, "_cached_plan", lambda *args: smaller)
    problem = _problem(3, 6, 33, 1, bias=True, lengths=False, dtype="float32", seed=2)
    with pytest.raises(RuntimeError, match=r"refused its launch"):
        _run_both(emulated, problem, "tanh", path="persistent")


def test_falls_back_to_the_per_step_path_when_the_persistent_module_cannot_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulated = Emulated(monkeypatch, "tight")
    working = _module.kernel

    def failing(name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> Any:
        if name in _module.PERSISTENT_KERNELS:
            msg = "cannot link libcudadevrt (as CuPy < 14.2 without a CUDA toolkit)"
            raise OSError(msg)
        return working(name, dtype, template_args)

    monkeypatch.setattr(_module, "kernel", failing)
    problem = _problem(4, 3, 13, 2, bias=True, lengths=True, dtype="float64", seed=4)
    with pytest.warns(RuntimeWarning, match=r"persistent CUDA kernels could not be built.*per-step path"):
        got, expected = _run_both(emulated, problem, "tanh")
    _assert_close(got, expected, "float64")
    assert emulated.launched["rnn_forward_step"] == 4 * 2 and emulated.launched["rnn_forward_persistent"] == 0


@pytest.mark.parametrize("path", ["persistent", "per_step"])
def test_relu_keeps_nan_in_the_kernels(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN pre-activation stays NaN through the kernels' relu, as in the NumPy loop and torch."""
    emulated = Emulated(monkeypatch, "tight")
    problem = _problem(3, 3, 13, 1, bias=True, lengths=False, dtype="float64", seed=6)
    problem["projections"][0][1, 0, :] = np.nan
    on = emulated.on_device
    states = CudaLoop(path).forward_layer(None, LayerForward(
        [on(p) for p in problem["projections"]], [on(b) for b in problem["biases"]],
        [on(w) for w in problem["weights"]], [on(h) for h in problem["h0s"]], None, "relu",
    ))
    host = np.asarray(states[0])
    assert np.all(np.isnan(host[1:, 0, :])), host[:, 0, :]
    assert np.all(np.isfinite(host[:, 1:, :]))


@pytest.mark.parametrize("path", ["persistent", "per_step"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_the_kernels_select_gradients_away_from_padding_and_dead_units(
    path: str, nonlinearity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN in grad_states on padded steps, and (relu) an inf into units that are off, leave the kernels' gradients
    equal to the NumPy loop's on clean inputs: selected, never multiplied by 0."""
    emulated = Emulated(monkeypatch, "tight")
    problem = _problem(5, 3, 13, 1, bias=True, lengths=True, dtype="float64", seed=9)
    problem["lengths"][:] = [5, 2, 3]
    states = numpy_inplace.forward_layer(None, LayerForward(
        [p.copy() for p in problem["projections"]], problem["biases"], problem["weights"], problem["h0s"],
        problem["lengths"], nonlinearity,
    ))
    clean = numpy_inplace.backward_layer(None, LayerBackward(
        problem["grad_states"], states, problem["weights"], problem["grad_h_ns"], problem["lengths"], nonlinearity,
    ))
    poisoned = problem["grad_states"][0].copy()
    poisoned[2:, 1, :] = np.nan  # sample 1 ends after step 1
    if nonlinearity == "relu":
        poisoned[states[0] <= 0] = np.inf  # every unit that is off
        poisoned[2:, 1, :] = np.nan
    on = emulated.on_device
    got = CudaLoop(path).backward_layer(None, LayerBackward(
        [on(poisoned)], [on(states[0])], [on(w) for w in problem["weights"]],
        [None if g is None else on(g) for g in problem["grad_h_ns"]], on(problem["lengths"]), nonlinearity,
    ))
    for a, b in ((got[0][0], clean[0][0]), (got[1][0], clean[1][0])):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-14)


# -- the register kernels (float32, hidden <= 256) ------------------------------------------------------------------
def _forced_register_plan(monkeypatch: pytest.MonkeyPatch, *, directions: int, hidden: int, batch: int,
                          columns: int, batch_tile: int) -> _launch.RegisterPlan:
    """A register plan with the given weights in registers and samples a block (any KR is right for any hidden:
    the columns past KR are read from shared memory, and KR past hidden reads zeros)."""
    threads = -(-hidden // 32) * 32
    groups = -(-batch // batch_tile)
    plan = _launch.RegisterPlan(
        columns, batch_tile, threads, groups, directions * groups,
        _launch.register_shared_bytes(hidden=hidden, columns=columns, batch_tile=batch_tile, threads=threads), 1, 1.0,
    )
    recurrence.clear_caches()
    monkeypatch.setattr(recurrence, "_cached_register_plan", lambda *args: plan)
    return plan


@pytest.mark.parametrize("batch_tile", _launch.REGISTER_BATCH_TILES)
@pytest.mark.parametrize("columns", _launch.REGISTER_COLUMNS)
def test_every_register_instance_matches_the_numpy_loop(columns: int, batch_tile: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each (KR, BG) at an odd hidden size (45: past KR=32, short of 64 and 128) and an odd batch, both directions,
    lengths: the register part, the shared part, and samples past the batch in the last block."""
    emulated = Emulated(monkeypatch, "tight")
    plan = _forced_register_plan(monkeypatch, directions=2, hidden=45, batch=7, columns=columns,
                                 batch_tile=batch_tile)
    problem = _problem(4, 7, 45, 2, bias=True, lengths=True, dtype="float32", seed=columns + batch_tile)
    got, expected = _run_both(emulated, problem, ("tanh", "relu")[batch_tile % 2], path="auto")
    _assert_close(got, expected, "float32")
    assert emulated.launched["rnn_forward_registers"] == 1 and emulated.launched["rnn_backward_registers"] == 1
    assert recurrence.kernels_for(2, 45, 7, "float32").plan is plan


REGISTER_SIZES = [  # (T, B, H, directions): odd sizes, T=1, one sample, a full warp and one past, the largest
    (1, 3, 1, 2), (2, 1, 31, 1), (5, 5, 32, 2), (3, 9, 33, 1), (4, 2, 100, 2), (2, 3, 129, 1), (3, 2, 200, 2),
    (2, 2, 256, 1),
]


@pytest.mark.parametrize(("steps", "batch", "hidden", "directions"), REGISTER_SIZES)
def test_register_kernels_at_odd_and_limit_sizes(steps: int, batch: int, hidden: int, directions: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    emulated = Emulated(monkeypatch, "h100")
    assert recurrence.kernels_for(directions, hidden, batch, "float32").kind == "registers"
    problem = _problem(steps, batch, hidden, directions, bias=hidden % 2 == 0, lengths=batch > 1, dtype="float32",
                       seed=hidden)
    got, expected = _run_both(emulated, problem, "tanh" if hidden % 3 else "relu")
    _assert_close(got, expected, "float32")
    assert emulated.launched["rnn_forward_registers"] == 1


def test_register_kernels_stop_at_their_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    Emulated(monkeypatch, "h100")
    assert recurrence.kernels_for(1, 257, 4, "float32").kind == "persistent"
    assert recurrence.kernels_for(1, 128, 4, "float64").kind == "persistent"
    assert recurrence.kernels_for(1, 128, 4, "float32", "persistent").kind == "persistent"
    assert recurrence.kernels_for(1, 128, 4, "float32", "per_step").kind == "per_step"


def test_register_kernels_are_deterministic_across_thread_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    emulated = Emulated(monkeypatch, "tight")
    _forced_register_plan(monkeypatch, directions=2, hidden=70, batch=5, columns=64, batch_tile=2)
    problem = _problem(5, 5, 70, 2, bias=True, lengths=True, dtype="float32", seed=5)
    runs = []
    for seed in (0, 1, 2):
        monkeypatch.setattr(launcher, "SHUFFLE_SEED", seed)
        runs.append(_run_both(emulated, problem, "tanh")[0])
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_register_kernel_refuses_a_grid_other_than_its_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    emulated = Emulated(monkeypatch, "h100")
    plan = recurrence.kernels_for(1, 20, 6, "float32").plan
    assert isinstance(plan, _launch.RegisterPlan) and plan.grid > 1
    smaller = _launch.RegisterPlan(**{**plan.__dict__, "grid": plan.grid - 1})
    recurrence.clear_caches()
    monkeypatch.setattr(recurrence, "_cached_register_plan", lambda *args: smaller)
    problem = _problem(3, 6, 20, 1, bias=True, lengths=False, dtype="float32", seed=2)
    with pytest.raises(RuntimeError, match=r"refused its launch"):
        _run_both(emulated, problem, "tanh")


def test_register_kernels_keep_relu_nan_and_select_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN pre-activation stays NaN through relu; NaN in grad_states on padding and an inf into units that are off
    leave the gradients equal to the NumPy loop's on clean inputs."""
    emulated = Emulated(monkeypatch, "tight")
    problem = _problem(5, 3, 13, 1, bias=True, lengths=True, dtype="float32", seed=9)
    problem["lengths"][:] = [5, 2, 3]
    on = emulated.on_device
    poisoned = [p.copy() for p in problem["projections"]]
    poisoned[0][1, 0, :] = np.nan
    states = CudaLoop().forward_layer(None, LayerForward(
        [on(p) for p in poisoned], [on(b) for b in problem["biases"]], [on(w) for w in problem["weights"]],
        [on(h) for h in problem["h0s"]], on(problem["lengths"]), "relu",
    ))
    host = np.asarray(states[0])
    assert np.all(np.isnan(host[1:, 0, :])) and np.all(np.isfinite(host[:, 1:, :]))
    clean_states = numpy_inplace.forward_layer(None, LayerForward(
        [p.copy() for p in problem["projections"]], problem["biases"], problem["weights"], problem["h0s"],
        problem["lengths"], "relu",
    ))
    clean = numpy_inplace.backward_layer(None, LayerBackward(
        problem["grad_states"], clean_states, problem["weights"], problem["grad_h_ns"], problem["lengths"], "relu",
    ))
    grad = problem["grad_states"][0].copy()
    grad[clean_states[0] <= 0] = np.inf
    grad[2:, 1, :] = np.nan
    got = CudaLoop().backward_layer(None, LayerBackward(
        [on(grad)], [on(clean_states[0])], [on(w) for w in problem["weights"]],
        [None if g is None else on(g) for g in problem["grad_h_ns"]], on(problem["lengths"]), "relu",
    ))
    assert emulated.launched["rnn_backward_registers"] == 1
    for a, b in ((got[0][0], clean[0][0]), (got[1][0], clean[1][0])):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)
