"""Build rnn_xp's .cu kernels with the host C++ compiler (see cuda_on_cpu.h) and launch them like CuPy RawKernels.

``kernel(name, dtype, template_args)`` has the call shape of :func:`rnn_xp.cuda._module.kernel`: the object it
returns is called as ``function(grid, block, args, shared_mem=...)`` with NumPy arrays and ``numpy.int32`` /
``numpy.uint32`` scalars (``None`` for a null pointer), and checks each argument's kind against the kernel's C++ signature (a pointer where an
int is expected, or a Python int where CuPy would pass a 64-bit value, is an error here, as it is a silent bug on a
GPU). The library is built on first use into a cache keyed by the content of every source involved.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp.cuda import _launch, _module

HERE = Path(__file__).resolve().parent
CUDA_DIR = _module.SOURCE_DIR
CTYPES = {"float32": "float", "float64": "double"}
# Order in which the threads of a block run between barriers: 0 = thread order, else a seed for a shuffle.
SHUFFLE_SEED = 1


def instances() -> dict[str, list[tuple[str, str, tuple[int, ...]]]]:
    """Every kernel instance the wrappers can launch, by source file: (kernel, C type, template args)."""
    persistent = [
        (name, ctype, (tile, split))
        for name in _module.PERSISTENT_KERNELS
        for ctype in CTYPES.values()
        for tile in _launch.LANE_TILES
        for split in _launch.LANE_SPLITS
    ]
    registers = [
        (name, "float", (columns, tile))
        for name in _module.REGISTER_KERNELS
        for columns in _launch.REGISTER_COLUMNS
        for tile in _launch.REGISTER_BATCH_TILES
    ]
    step = [(name, ctype, ()) for name in ("rnn_forward_step", "rnn_backward_step") for ctype in CTYPES.values()]
    return {"rnn_persistent.cu": persistent, "rnn_registers.cu": registers, "rnn_step.cu": step}


def symbol(name: str, ctype: str, template_args: tuple[int, ...]) -> str:
    return "_".join(["emu", name, ctype, *map(str, template_args)])


def _entry_points(source: str) -> str:
    lines = ['#include <cstdio>', '#include "cuda_on_cpu.h"', f'#include "{CUDA_DIR / source}"', ""]
    for name, ctype, args in instances()[source]:
        expression = f"{name}<{', '.join([ctype, *map(str, args)])}>"
        tag = symbol(name, ctype, args)
        lines += [
            f'extern "C" int {tag}(unsigned gx, unsigned bx, std::size_t shared, void** args, unsigned seed,',
            "                      char* error, std::size_t error_size) {",
            "    try {",
            f"        emu::launch(&{expression}, dim3{{gx, 1, 1}}, dim3{{bx, 1, 1}}, shared, args, seed);",
            "    } catch (const std::exception& failure) {",
            "        std::snprintf(error, error_size, \"%s\", failure.what());",
            "        return 1;",
            "    }",
            "    return 0;",
            "}",
            f'extern "C" const char* {tag}_signature() {{ return emu::signature(&{expression}); }}',
            "",
        ]
    return "\n".join(lines)


def _digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*CUDA_DIR.glob("*.cu"), *CUDA_DIR.glob("*.cuh"), HERE / "cuda_on_cpu.h", Path(__file__)]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def cache_dir() -> Path:
    root = os.environ.get("RNN_XP_EMULATION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnn_xp", "cuda-emulation"
    )
    return Path(root) / _digest()


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled emulation library (built once per content digest; concurrent builders write atomically)."""
    target = cache_dir() / "kernels.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            objects = []
            units = {source: Path(work) / f"{Path(source).stem}_entry.cpp" for source in instances()}
            units["runtime"] = Path(work) / "runtime.cpp"
            for source, unit in units.items():
                unit.write_text(
                    'extern "C" { __attribute__((aligned(16))) unsigned char shared_raw[256 * 1024]; }\n'
                    if source == "runtime" else _entry_points(source)
                )
            flags = ["-std=c++20", "-O1", "-fPIC", "-w", f"-I{HERE}", f"-I{CUDA_DIR}"]

            def compile_unit(unit: Path) -> Path:
                obj = unit.with_suffix(".o")
                result = subprocess.run(["g++", *flags, "-c", str(unit), "-o", str(obj)], capture_output=True,
                                        text=True, check=False)
                if result.returncode != 0:
                    msg = f"g++ could not compile {unit.name} for the CUDA emulation:\n{result.stderr[-4000:]}"
                    raise RuntimeError(msg)
                return obj

            with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
                objects = list(pool.map(compile_unit, units.values()))
            built = Path(work) / "kernels.so"
            subprocess.run(["g++", "-shared", *map(str, objects), "-o", str(built)], check=True)
            os.replace(built, target)
    return ctypes.CDLL(str(target))


class EmulatedKernel:
    """One kernel instance, launched on CPU fibers; see the module docstring."""

    def __init__(self, name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> None:
        ctype = CTYPES[str(np.dtype(str(dtype)))]
        tag = symbol(name, ctype, tuple(template_args))
        lib = library()
        self.name = f"{name}<{', '.join([ctype, *map(str, template_args)])}>"
        self._launch = getattr(lib, tag)
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                                 ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t]
        signature = getattr(lib, f"{tag}_signature")
        signature.restype = ctypes.c_char_p
        self.signature = signature().decode()
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.num_regs = 128  # what ptxas reports for these kernels on sm_90 (96..159)
        self.launches: list[dict[str, Any]] = []

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...],
                 shared_mem: int = 0) -> None:
        if len(args) != len(self.signature):
            msg = f"{self.name} takes {len(self.signature)} arguments; got {len(args)}"
            raise TypeError(msg)
        if shared_mem > max(48 * 1024, self.max_dynamic_shared_size_bytes):
            msg = f"{self.name}: {shared_mem} bytes of dynamic shared memory without raising the kernel's limit"
            raise ValueError(msg)
        holders = [self._holder(index, kind, value) for index, (kind, value) in enumerate(zip(self.signature, args, strict=True))]
        pointers = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        grid_x = _one_dimensional(grid, "grid")
        block_x = _one_dimensional(block, "block")
        self.launches.append({"grid": grid_x, "block": block_x, "shared_mem": shared_mem})
        error = ctypes.create_string_buffer(512)
        if self._launch(grid_x, block_x, shared_mem, pointers, SHUFFLE_SEED, error, len(error)) != 0:
            msg = f"{self.name} failed in the CPU emulation: {error.value.decode()}"
            raise RuntimeError(msg)

    def _holder(self, index: int, kind: str, value: Any) -> Any:
        where = f"{self.name} argument {index}"
        if kind == "p":
            if value is None:  # CuPy passes None as a null pointer
                return ctypes.c_void_p(None)
            if not isinstance(value, np.ndarray) or not value.flags.c_contiguous:
                msg = f"{where} must be a C-contiguous array or None; got {type(value).__name__}"
                raise TypeError(msg)
            return ctypes.c_void_p(value.ctypes.data)
        expected = {"i": np.int32, "u": np.uint32}[kind]
        if type(value) is not expected:
            msg = f"{where} must be numpy.{expected.__name__}; got {type(value).__name__}"
            raise TypeError(msg)
        return (ctypes.c_int if kind == "i" else ctypes.c_uint)(int(value))


def _one_dimensional(shape: tuple[int, ...], name: str) -> int:
    extent = tuple(int(n) for n in shape)
    if len(extent) == 0 or any(n != 1 for n in extent[1:]) or extent[0] < 1:
        msg = f"the emulation runs 1-D launches; {name} was {shape}"
        raise ValueError(msg)
    return extent[0]


@functools.cache
def kernel(name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> EmulatedKernel:
    """Drop-in for :func:`rnn_xp.cuda._module.kernel`."""
    return EmulatedKernel(name, str(np.dtype(str(dtype))), tuple(template_args))
