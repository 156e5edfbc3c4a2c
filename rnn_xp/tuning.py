"""Opt-in tuning, in the manner of FFTW's wisdom: measure this machine's loops once, keep the answer in a plan file,
and let later processes load it.

By default rnn_xp never times anything inside a call: the plan (:mod:`rnn_xp._plan`) picks a loop by a fixed rule
measured on the project's machine. :func:`tune` (or ``rnn-xp tune``) times the same choices here and writes a plan
file; every later process loads it on its first call. A plan is an input like any other: with the same plan, the same
call runs the same loop and gives the same bits in every run.

Where the plan file is: the ``RNN_XP_PLAN`` environment variable (a path; ``none`` for no plan at all), else
``$XDG_CACHE_HOME/rnn_xp/plan.json`` (``~/.cache/rnn_xp/plan.json``). A plan made on another CPU, or with another
number of usable CPUs, is not applied (one warning says so). :func:`use` sets or clears this process's plan
explicitly.

What it holds:

- ``cpu``: for each dtype, number of directions and measured hidden size, which CPU loop was fastest at each measured
  batch (:data:`rnn_xp._plan.CPU_CHOICES` has the same form, and the same lookup: the nearest measured point);
- ``cuda``: for each measured (dtype, directions, batch, hidden) on a GPU, which path won (the register kernels, the
  persistent kernels or the per-step path: :data:`rnn_xp.cuda.recurrence.PATHS`); a call takes the nearest measured
  point of its dtype and directions.
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnn_xp._cpu import cpu_model, usable_cpus

PLAN_ENV = "RNN_XP_PLAN"
FORMAT = 1
HIDDEN_SIZES = (32, 64, 128, 256, 512, 1024)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
STEPS = 64  # the sequence length every choice is timed at
INPUT_SIZE = 64
CPU_LETTERS = {"compiled": "c", "numpy": "n", "numpy_transposed": "t"}  # as rnn_xp._plan.LOOP_LETTERS
WIN_MARGIN = 0.9  # a loop other than the NumPy loop is chosen only where it takes at most this share of its time
CUDA_PATHS = ("registers", "persistent", "per_step")  # the CUDA paths a plan may choose (rnn_xp.cuda.recurrence)


@dataclass(frozen=True)
class CudaChoice:
    """The path that won on one GPU for one (dtype, directions, batch, hidden)."""

    device: str
    dtype: str
    directions: int
    batch: int
    hidden: int
    path: str  # "registers", "persistent" or "per_step"


@dataclass(frozen=True)
class Plan:
    """A tuned plan: the machine it was measured on and the choices made there (see the module docstring)."""

    machine: dict[str, Any]
    batches: tuple[int, ...] = BATCHES  # the measured batches: one letter of each cpu entry per batch
    cpu: dict[tuple[str, int], dict[int, str]] = field(default_factory=dict)  # as rnn_xp._plan.CPU_CHOICES
    cuda: tuple[CudaChoice, ...] = ()

    def cuda_path(self, dtype: str, batch: int, hidden: int, directions: int) -> str:
        """The path measured nearest to (batch, hidden) for this dtype and directions on the current GPU (log-scale
        distance; ties to the first measured), or "auto" (the launch model) where none was measured."""
        device = _current_gpu()
        best, distance = "auto", math.inf
        for choice in self.cuda:
            if (choice.device, choice.dtype, choice.directions) != (device, dtype, directions):
                continue
            gap = abs(math.log2(choice.batch / batch)) + abs(math.log2(choice.hidden / hidden))
            if gap < distance:
                best, distance = choice.path, gap
        return best

    def to_json(self) -> dict[str, Any]:
        return {
            "rnn_xp_plan": FORMAT,
            "machine": self.machine,
            "batches": list(self.batches),
            "cpu": [{"dtype": d, "directions": n, "hidden": h, "loops": letters}
                    for (d, n), rows in sorted(self.cpu.items()) for h, letters in sorted(rows.items())],
            "cuda": [vars(choice) for choice in self.cuda],
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> Plan:
        """A plan from its JSON form; a ValueError names ``source`` and what is wrong."""
        try:
            if data.get("rnn_xp_plan") != FORMAT:
                msg = f"rnn_xp_plan must be {FORMAT}; got {data.get('rnn_xp_plan')!r}"
                raise ValueError(msg)
            batches = tuple(int(b) for b in data["batches"])
            if not batches or min(batches) < 1:
                msg = f"batches must be positive integers; got {list(batches)}"
                raise ValueError(msg)
            cpu: dict[tuple[str, int], dict[int, str]] = {}
            for entry in data["cpu"]:
                hidden, letters = int(entry["hidden"]), str(entry["loops"])
                if hidden < 1 or len(letters) != len(batches) or set(letters) - set(CPU_LETTERS.values()):
                    msg = f"a cpu entry needs hidden >= 1 and {len(batches)} letters c, n or t; got {hidden}, {letters}"
                    raise ValueError(msg)
                cpu.setdefault((str(entry["dtype"]), int(entry["directions"])), {})[hidden] = letters
            cuda = tuple(
                CudaChoice(str(c["device"]), str(c["dtype"]), int(c["directions"]), int(c["batch"]),
                           int(c["hidden"]), str(c["path"]))
                for c in data["cuda"]
            )
            unknown = sorted({c.path for c in cuda} - set(CUDA_PATHS))
            if unknown or any(c.batch < 1 or c.hidden < 1 for c in cuda):
                msg = f"cuda entries need a path among {CUDA_PATHS} and batch, hidden >= 1; got paths {unknown}"
                raise ValueError(msg)
            return cls(machine=dict(data["machine"]), batches=batches, cpu=cpu, cuda=cuda)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            msg = f"{source} is not an rnn_xp plan file ({type(error).__name__}: {error})"
            raise ValueError(msg) from None


def this_machine() -> dict[str, Any]:
    """What a plan must have been measured on to apply here."""
    return {"cpu": cpu_model(), "usable_cpus": usable_cpus()}


def default_path() -> Path:
    """``$XDG_CACHE_HOME/rnn_xp/plan.json``, or ``~/.cache/rnn_xp/plan.json``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rnn_xp" / "plan.json"


def plan_path() -> Path | None:
    """Where this process looks for its plan: ``RNN_XP_PLAN`` (``none``: nowhere), else :func:`default_path`."""
    value = os.environ.get(PLAN_ENV)
    if value is None:
        return default_path()
    if value.strip().lower() in ("", "none", "off", "0"):
        return None
    return Path(value).expanduser()


def load(path: str | Path) -> Plan:
    """Read a plan file.

    Raises
    ------
    ValueError
        The file does not hold an rnn_xp plan.
    OSError
        It cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        msg = f"{path} is not an rnn_xp plan file (not JSON: {error})"
        raise ValueError(msg) from None
    return Plan.from_json(data, str(path))


def save(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` to ``path`` (its folder made if needed), atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(plan.to_json(), indent=1) + "\n")
    partial.replace(path)
    return path


_lock = threading.Lock()
_state: dict[str, Any] = {}  # "plan": the active Plan or None, once decided in this process


def active_plan() -> Plan | None:
    """This process's plan: the one :func:`use` set, else the plan file's (read on the first call and kept), if it
    was made on this machine; None otherwise."""
    if "plan" not in _state:
        with _lock:
            if "plan" not in _state:
                _state["plan"] = _load_active()
    plan: Plan | None = _state["plan"]
    return plan


def use(plan: Plan | str | Path | None) -> Plan | None:
    """Make ``plan`` (a Plan or a plan file's path) this process's plan, whatever machine it names; None: no plan,
    the fixed rule. Returns the plan now active. Affects calls made after it returns."""
    chosen = load(plan) if isinstance(plan, str | Path) else plan
    with _lock:
        _state["plan"] = chosen
    return chosen


def _load_active() -> Plan | None:
    path = plan_path()
    if path is None or not path.is_file():
        return None
    try:
        plan = load(path)
    except (OSError, ValueError) as error:
        warnings.warn(f"rnn_xp: ignoring the plan file: {error}", RuntimeWarning, stacklevel=4)
        return None
    here = this_machine()
    made_on = {key: plan.machine.get(key) for key in here}
    if made_on != here:
        warnings.warn(
            f"rnn_xp: ignoring the plan file {path}: it was measured on {made_on}, this process runs on {here} "
            "(run `rnn-xp tune` here to make one)", RuntimeWarning, stacklevel=4,
        )
        return None
    return plan


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been copied held by a thread that does not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- measuring -----------------------------------------------------------------------------------------------------
def tune(
    path: str | Path | None = None,
    *,
    dtypes: Sequence[str] = ("float32", "float64"),
    directions: Sequence[int] = (1, 2),
    hidden_sizes: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
    steps: int | None = None,
    gpu: bool | None = None,
    budget: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Time this machine's loops and write the plan file (``path``, else :func:`plan_path`, else
    :func:`default_path`). The current process keeps its plan until :func:`use` is called.

    ``hidden_sizes``, ``batches``, ``steps``: the grid (default :data:`HIDDEN_SIZES`, :data:`BATCHES`,
    :data:`STEPS`). ``gpu``: also time the CUDA paths (None: when CuPy sees a GPU). ``budget``: seconds of timing
    per loop and shape.

    Returns
    -------
    Plan
        What was written.
    """
    hidden_sizes = HIDDEN_SIZES if hidden_sizes is None else tuple(hidden_sizes)
    batches = BATCHES if batches is None else tuple(batches)
    steps = STEPS if steps is None else steps
    cpu: dict[tuple[str, int], dict[int, str]] = {}
    for dtype in dtypes:
        for count in directions:
            table = measure_cpu(dtype, count, hidden_sizes=hidden_sizes, batches=batches, steps=steps,
                                budget=budget, progress=progress)
            cpu[(dtype, count)] = winners(table, hidden_sizes, batches)
    cuda: tuple[CudaChoice, ...] = ()
    if gpu or (gpu is None and _current_gpu(import_cupy=True) is not None):
        cuda = measure_cuda(dtypes, directions, hidden_sizes=hidden_sizes, batches=batches, steps=steps,
                            budget=budget, progress=progress)
    plan = Plan(machine=this_machine(), batches=tuple(batches), cpu=cpu, cuda=cuda)
    save(plan, path if path is not None else (plan_path() or default_path()))
    return plan


def measure_cpu(
    dtype: str, directions: int, *, hidden_sizes: Sequence[int] = HIDDEN_SIZES, batches: Sequence[int] = BATCHES,
    steps: int = STEPS, budget: float = 0.1, progress: Callable[[str], None] | None = None,
) -> dict[tuple[int, int], dict[str, float]]:
    """Median seconds of a layer's forward (T = ``steps``, I = :data:`INPUT_SIZE`) in each CPU loop (the two NumPy
    loops and the compiled one), per (hidden, batch); the loops alternate, so a disturbance hits all. Along each
    hidden size, once the compiled loop has lost twice in a row by 10% it is left out for the larger batches (they
    only favour the NumPy loops' GEMMs)."""
    import numpy as np

    import rnn_xp
    from rnn_xp.loops import numba_available

    table: dict[tuple[int, int], dict[str, float]] = {}
    for hidden in hidden_sizes:
        losses = 0 if numba_available() else 2  # without numba, the two NumPy loops only
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((steps, batch, INPUT_SIZE)).astype(dtype)
            loops = [loop for loop in CPU_LETTERS if loop != "compiled" or losses < 2]
            calls = {
                loop: _layer_call(rnn_xp.RNN(INPUT_SIZE, hidden, bidirectional=directions == 2, dtype=dtype, seed=0,
                                             loop=loop).eval(), x)
                for loop in loops
            }
            seconds = _alternating_medians(calls, budget)
            table[(hidden, batch)] = seconds
            if progress is not None:
                progress(f"cpu {dtype} D={directions} H={hidden} B={batch}: "
                         + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in seconds.items()))
            if "compiled" in seconds:
                numpy = min(seconds["numpy"], seconds["numpy_transposed"])
                losses = losses + 1 if seconds["compiled"] > 1.1 * numpy else 0
    return table


def winners(
    table: dict[tuple[int, int], dict[str, float]], hidden_sizes: Sequence[int], batches: Sequence[int]
) -> dict[int, str]:
    """{hidden: letters}, one letter per batch (:data:`CPU_LETTERS`): the NumPy loop, unless another loop measured
    there takes at most :data:`WIN_MARGIN` of its time (then the fastest such loop); "n" where the batch was not
    measured. The margin keeps near-ties, which flip from one run to the next, on the plain loop."""

    order = ("numpy", "compiled", "numpy_transposed")  # ties: the first

    def letter(cell: dict[str, float]) -> str:
        faster = [loop for loop in order
                  if loop in cell and (loop == "numpy" or cell[loop] <= WIN_MARGIN * cell["numpy"])]
        return CPU_LETTERS[min(faster, key=lambda loop: (cell[loop], order.index(loop)))]

    return {hidden: "".join(letter(table[(hidden, batch)]) if (hidden, batch) in table else "n" for batch in batches)
            for hidden in hidden_sizes}


def measure_cuda(
    dtypes: Sequence[str], directions: Sequence[int], *, hidden_sizes: Sequence[int], batches: Sequence[int],
    steps: int, budget: float, progress: Callable[[str], None] | None = None,
) -> tuple[CudaChoice, ...]:
    """The fastest CUDA path per (dtype, directions, batch, hidden) on the current GPU, among the paths that run
    kernels of their own there (:func:`rnn_xp.cuda.recurrence.kernels_for`: "registers", "persistent",
    "per_step"); a size where only one does is not recorded ("auto" runs it anyway). Each candidate's forward
    (T = ``steps``, I = :data:`INPUT_SIZE`) is timed on the host clock around the call and a device synchronize
    (what a caller waits for, the host's launches included), the candidates alternating, median of the rounds,
    after one untimed call each (compilation, plans).

    Raises
    ------
    RuntimeError
        CuPy sees no GPU.
    """
    import cupy
    import numpy as np

    from rnn_xp.cuda.recurrence import kernels_for
    from rnn_xp.loops.cuda import CudaLoop

    device = _current_gpu()
    if device is None:
        msg = "measure_cuda needs a GPU that CuPy sees; found none"
        raise RuntimeError(msg)
    synchronize = cupy.cuda.Device().synchronize
    choices = []
    for dtype in dtypes:
        for count in directions:
            for hidden in hidden_sizes:
                params = {name: cupy.asarray(value) for name, value in _params(dtype, count, hidden).items()}
                for batch in batches:
                    paths: list[str] = [path for path in ("registers", "persistent", "per_step")
                             if kernels_for(count, hidden, batch, dtype, path).kind == path]
                    if len(paths) < 2:
                        continue
                    x = cupy.asarray(np.random.default_rng(0).standard_normal((steps, batch, INPUT_SIZE)).astype(dtype))
                    calls = {path: _cuda_call(x, params, CudaLoop(path)) for path in paths}
                    seconds = _alternating_medians(calls, budget, synchronize=synchronize)
                    path = min(seconds, key=seconds.__getitem__)
                    if progress is not None:
                        progress(f"cuda {dtype} D={count} H={hidden} B={batch}: {path} ("
                                 + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in seconds.items()) + ")")
                    choices.append(CudaChoice(device, dtype, count, batch, hidden, path))
    return tuple(choices)


def _layer_call(rnn: Any, x: Any) -> Callable[[], None]:
    def call() -> None:
        rnn(x)

    return call


def _cuda_call(x: Any, params: dict[str, Any], loop: Any) -> Callable[[], None]:
    """One forward of ``params`` over ``x`` (CuPy) with ``loop``, the plan's choice bypassed."""
    import array_api_compat.cupy as xp

    from rnn_xp._layout import CallerLayout
    from rnn_xp.functional import _core
    from rnn_xp.params import layout_from_params

    layout = layout_from_params(params)

    def call() -> None:
        _core.forward(xp, loop, x, params, layout, None, None, "tanh", [], CallerLayout())

    return call


def _params(dtype: str, directions: int, hidden: int) -> dict[str, Any]:
    import rnn_xp

    return rnn_xp.RNN(INPUT_SIZE, hidden, bidirectional=directions == 2, dtype=dtype, seed=0).state_dict()


def _alternating_medians(
    calls: dict[str, Callable[[], None]], budget: float, synchronize: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Median seconds of each call: one untimed call each, then rounds in which each runs once, until every call
    has run for ``budget`` seconds in all (at least 5 rounds, at most 200)."""
    for call in calls.values():
        call()
    synchronize()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(200):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            synchronize()
            samples[name].append(time.perf_counter() - started)
        if round_ >= 4 and min(sum(s) for s in samples.values()) >= budget:
            break
    return {name: statistics.median(s) for name, s in samples.items()}


def _current_gpu(*, import_cupy: bool = False) -> str | None:
    """The current CUDA device's name, or None where CuPy or a GPU is missing (CuPy is imported only if asked)."""
    import importlib
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is None and import_cupy:
        try:
            cupy = importlib.import_module("cupy")
        except ImportError:
            return None
    if cupy is None:
        return None
    try:
        return _gpu_name(int(cupy.cuda.runtime.getDevice()))
    except Exception:  # no driver or device
        return None


@functools.lru_cache(maxsize=16)
def _gpu_name(device_id: int) -> str:
    """A GPU's name, asked of the driver once per device (a plan's lookup runs on every call)."""
    import cupy

    return str(cupy.cuda.runtime.getDeviceProperties(device_id)["name"].decode())
