"""Predictable by default: the same call gives the same bits in every run and process, whatever the machine's load,
earlier calls, the weights' memory alignment or how they arrived; nothing is timed inside a call; threads, fork and
Ctrl-C leave the library correct and usable; nothing spins or traps."""

from __future__ import annotations

import _thread
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import rnn_xp
from rnn_xp import tuning

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("bits_probe.py")


def _probe(*options: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, str]:
    """The digests of tests/bits_probe.py run in a fresh process."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run([*prefix, sys.executable, str(PROBE), *options], env=environment, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    digests: dict[str, str] = json.loads(result.stdout)
    return digests


DASK = ("--dask",) if importlib.util.find_spec("dask") is not None else ()  # rnn_xp.dask too, where installed


@pytest.fixture(scope="module")
def quiet() -> dict[str, str]:
    return _probe(*DASK)


def test_a_layer_its_state_dict_a_pickle_and_a_deep_copy_give_the_same_bits(quiet: dict[str, str]) -> None:
    """rnn(x) and rnn_forward(x, rnn.state_dict()) (its arrays land on other memory alignments), and the layer after
    pickle and deepcopy: one digest per case, forward and backward."""
    cases = {key.split("-", 1)[1] for key in quiet if key.startswith("layer-")}
    assert len(cases) >= 6
    for case in cases:
        assert quiet[f"layer-{case}"] == quiet[f"functional-{case}"] == quiet[f"pickle-{case}"] == \
            quiet[f"deepcopy-{case}"], case


def test_two_quiet_processes_give_the_same_bits(quiet: dict[str, str]) -> None:
    assert _probe(*DASK) == quiet


def test_unrelated_calls_before_change_no_bit(quiet: dict[str, str]) -> None:
    """Other shapes, dtypes and forced loops, two threads at once and a failed call, in the same process first."""
    assert _probe("--warm", *DASK) == quiet


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Two processes that keep every core of this machine busy."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.2)
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_a_busy_machine_changes_no_bit(quiet: dict[str, str], busy_machine: None) -> None:
    assert _probe(*DASK) == quiet


@pytest.mark.skipif(shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"),
                    reason="needs taskset (Linux)")
def test_one_cpu_gives_the_same_bits_in_every_run() -> None:
    """A process allowed one CPU may run other BLAS threads than one allowed all; two such processes agree."""
    pinned = ("taskset", "-c", str(min(os.sched_getaffinity(0))))
    assert _probe(prefix=pinned) == _probe("--warm", prefix=pinned)


def test_a_plan_file_is_an_input_like_any_other(tmp_path: Path) -> None:
    """With a tuned plan (here one that runs the compiled loop for every batch), two processes give the same bits
    as each other, and the choice follows the file."""
    plan = tuning.Plan(machine=tuning.this_machine(), batches=(1, 1024),
                       cpu={(dtype, directions): {32: "cc", 1024: "cc"}
                            for dtype in ("float32", "float64") for directions in (1, 2)})
    path = tuning.save(plan, tmp_path / "plan.json")
    env = {"RNN_XP_PLAN": str(path)}
    first = _probe(env=env)
    assert _probe("--warm", env=env) == first
    check = ("import rnn_xp._plan as p; print(p.cpu_loop_name('float32', 512, 64, 1), "
             "p.cpu_loop_name('float32', 512, 4096, 1))")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run([sys.executable, "-c", check], env=environment, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["compiled", "numpy"]


def test_nothing_is_timed_inside_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every clock raises while layers of both CPU loops and the generic one run forward and backward."""

    def no_clock() -> float:
        raise AssertionError("a clock was read inside a call")

    rnns = [rnn_xp.RNN(4, hidden, bidirectional=True, seed=0, loop=loop)
            for hidden, loop in ((16, "auto"), (300, "auto"), (16, "numpy"), (16, "compiled"), (16, "generic"))]
    batches = (1, 200, 7, 7, 7)
    for name in ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns",
                 "process_time", "thread_time"):
        monkeypatch.setattr(time, name, no_clock)
    for rnn, batch in zip(rnns, batches, strict=True):
        out, _ = rnn(np.ones((6, batch, 4), dtype=np.float32), lengths=[6] * batch)
        rnn.backward(np.ones_like(out))


# -- threads, fork, Ctrl-C ---------------------------------------------------------------------------------------
def _call(rnn: rnn_xp.RNN, x: np.ndarray) -> list[np.ndarray]:
    out, h_n = rnn(x)
    grads = rnn.backward(np.ones_like(out))
    return [out, h_n, *grads, *rnn.grads.values()]


def _same(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    return len(left) == len(right) and all(np.array_equal(a, b, equal_nan=True) for a, b in zip(left, right,
                                                                                                  strict=True))


@pytest.mark.parametrize("shared", [True, False], ids=["one-layer", "two-layers"])
@pytest.mark.parametrize("batch", [2, 80], ids=["compiled", "numpy"])
def test_threads_on_one_layer_and_on_different_layers_get_their_own_results(shared: bool, batch: int) -> None:
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((30, batch, 5)).astype(np.float32) for _ in range(2)]
    layers = [rnn_xp.RNN(5, 48, num_layers=2, bidirectional=True, seed=1)]
    layers.append(layers[0] if shared else rnn_xp.RNN(5, 48, num_layers=2, bidirectional=True, seed=1))
    expected = [_call(rnn_xp.RNN(5, 48, num_layers=2, bidirectional=True, seed=1), x) for x in inputs]
    failures: list[str] = []

    def work(index: int) -> None:
        for _ in range(15):
            if not _same(_call(layers[index], inputs[index]), expected[index]):
                failures.append(f"thread {index}")

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's, when another test imported it; not used here
def test_a_child_forked_while_other_threads_run_calls_and_hold_the_plan_lock_works() -> None:
    """The child gets new locks (rnn_xp.tuning's is held by another thread at the fork) and gives the parent's bits."""
    x = np.random.default_rng(4).standard_normal((20, 3, 5)).astype(np.float32)
    rnn = rnn_xp.RNN(5, 32, seed=2)
    expected = _call(rnn, x)
    stop = threading.Event()

    def keep_calling() -> None:
        other = rnn_xp.RNN(5, 32, bidirectional=True, seed=3)
        while not stop.is_set():
            _call(other, x)

    def hold_the_plan_lock() -> None:
        with tuning._lock:
            stop.wait()

    threads = [threading.Thread(target=keep_calling), threading.Thread(target=hold_the_plan_lock)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.05)
        statuses = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:  # the child: a call (its plan is looked up again after the fork), then out
                tuning._state.clear()
                ok = _same(_call(rnn, x), expected)
                os._exit(0 if ok else 1)
            deadline = time.monotonic() + 60
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    statuses.append("hung")
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert statuses == [0, 0, 0]


@pytest.mark.parametrize("loop", ["numpy", "compiled"])
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_during_a_call_leaves_the_library_usable(loop: str) -> None:
    rng = np.random.default_rng(5)
    rnn = rnn_xp.RNN(16, 256, seed=4, loop=loop)
    small = rng.standard_normal((10, 4, 16)).astype(np.float32)
    expected = _call(rnn, small)
    before = {name: value.copy() for name, value in rnn.parameters().items()}
    long_input = rng.standard_normal((3000, 4, 16)).astype(np.float32)
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(100):
                rnn(long_input)
                rnn.backward(np.ones((3000, 4, 256), dtype=np.float32))
    finally:
        timer.cancel()
    assert all(np.array_equal(before[name], value) for name, value in rnn.parameters().items())
    assert _same(_call(rnn, small), expected)


# -- what the kernels may not do ----------------------------------------------------------------------------------
_IR_CHECK = """
import numpy as np, rnn_xp
from rnn_xp.loops import numba_kernels
for batch, dtype in ((1, "float32"), (5, "float64")):
    rnn = rnn_xp.RNN(3, 20, bidirectional=True, dtype=dtype, loop="compiled", seed=0)
    out, _ = rnn(np.ones((4, batch, 3), dtype=dtype), lengths=[4] * batch)
    rnn.backward(np.ones_like(out))
for name in ("forward_direction", "backward_direction"):
    for ir in getattr(numba_kernels, name).inspect_llvm().values():
        print(name, len(ir), "readcyclecounter" in ir, "pause" in ir)
"""


def test_the_kernels_read_no_cycle_counter_and_never_spin(tmp_path: Path) -> None:
    """llvm.readcyclecounter traps in user mode on aarch64 Linux, and a spin-wait needs it or the pause hint.
    Checked in the LLVM IR of every kernel the layers run, compiled afresh (numba shows no IR for cached code)."""
    pytest.importorskip("numba")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", _IR_CHECK], env=environment, capture_output=True, text=True,
                            timeout=600, check=True)
    lines = [line.split() for line in result.stdout.splitlines()]
    assert len(lines) >= 4 and all(int(size) > 10_000 for _, size, _, _ in lines), result.stdout
    assert all(counter == pause == "False" for _, _, counter, pause in lines), result.stdout


# -- usable CPUs ----------------------------------------------------------------------------------------------------
def _cgroup(tmp_path: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.mark.parametrize(("files", "membership", "quota"), [
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
    ({"cpu.max": "max 100000\n", "a/cpu.max": "400000 100000\n", "a/b/cpu.max": "50000 100000\n"}, "0::/a/b\n", 0.5),
    ({"cpu.max": "100000 100000\n", "a/cpu.max": "max 100000\n"}, "0::/a\n", 1.0),  # a parent's quota holds
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
      "cpu,cpuacct/d/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/d/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/d\n", 2.0),  # cgroup v1
    ({}, "0::/x\n", None),
])
def test_the_cgroup_cpu_quota_is_read_along_the_path(tmp_path: Path, files: dict[str, str], membership: str,
                                                     quota: float | None) -> None:
    from rnn_xp._cpu import cgroup_cpu_quota

    root, proc = _cgroup(tmp_path, files, membership)
    assert cgroup_cpu_quota(root, proc) == quota


def test_usable_cpus_follow_the_affinity_and_the_quota(tmp_path: Path) -> None:
    from rnn_xp._cpu import usable_cpus

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    root, proc = _cgroup(tmp_path, {"cpu.max": "50000 100000\n"}, "0::/\n")
    assert usable_cpus(root, proc) == 1
    root, proc = _cgroup(tmp_path / "open", {"cpu.max": "max 100000\n"}, "0::/\n")
    assert usable_cpus(root, proc) == allowed
    root, proc = _cgroup(tmp_path / "many", {"cpu.max": f"{1000 * 100000} 100000\n"}, "0::/\n")
    assert usable_cpus(root, proc) == allowed
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
        code = "from rnn_xp._cpu import usable_cpus; print(usable_cpus())"
        out = subprocess.run(["taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-c", code],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "1"
