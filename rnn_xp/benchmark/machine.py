"""What this machine is: versions, CPU, BLAS, GPUs, and which rnn_xp paths can run here (``rnn-xp info``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp._cpu import cpu_model, usable_cpus


def describe() -> dict[str, Any]:
    """A JSON-ready description of the machine; every field is measured or read, never assumed."""
    import rnn_xp

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(), "usable_cpus": usable_cpus(),
                "blas": blas()},
        "versions": {
            "rnn_xp": rnn_xp.__version__,
            "numpy": np.__version__,
            **{name: _version(name) for name in ("array-api-compat", "torch", "cupy", "array-api-strict", "numba",
                                                 "onnxruntime", "jax")},
        },
        "gpus": gpus(),
        "paths": paths(),
        "loop plan": loop_plan(),
    }


def loop_plan() -> str:
    """Where this process's choice of loops comes from: the fixed rule, or a tuned plan file (``rnn-xp tune``)."""
    from rnn_xp import tuning

    plan = tuning.active_plan()
    if plan is None:
        where = tuning.plan_path()
        return "fixed rule (no plan file" + (f" at {where})" if where is not None else ": RNN_XP_PLAN=none)")
    return f"tuned plan {tuning.plan_path()} (measured on {plan.machine.get('cpu')})"


def blas() -> str:
    """NumPy's BLAS and, for OpenBLAS, the kernels it runs: ``OPENBLAS_CORETYPE`` overrides its own CPU detection
    (``Haswell`` on an AVX-512 CPU runs AVX2 kernels: on a Zen 5 machine half the large-sgemm throughput)."""
    try:
        config = np.show_config(mode="dicts")
        info = config["Build Dependencies"]["blas"]
        name = f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # older NumPy has no dict mode; the BLAS name is informational only
        name = "unknown"
    core = openblas_core()
    if core is None:
        return name
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return f"{name}, {core} kernels" + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")


def openblas_core() -> str | None:
    """The kernel family OpenBLAS uses in this process (``openblas_get_corename``), or None when NumPy's BLAS is not
    an OpenBLAS this can find (read from the libraries this process has loaded)."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libraries = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.split()[-1].lower()})
    for library in libraries:
        try:
            handle = ctypes.CDLL(library)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                       "openblas_get_corename"):
            function = getattr(handle, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                value = function()
                return value.decode() if value else None
    return None


def gpus() -> list[dict[str, Any]]:
    """One entry per CUDA device CuPy sees (empty without CuPy or a GPU)."""
    if importlib.util.find_spec("cupy") is None:
        return []
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        found = []
        for index in range(count):
            properties = cupy.cuda.runtime.getDeviceProperties(index)
            found.append(
                {
                    "index": index,
                    "name": _text(properties["name"]),
                    "compute_capability": f"{properties['major']}.{properties['minor']}",
                    "multiprocessors": properties["multiProcessorCount"],
                    "memory_gib": round(properties["totalGlobalMem"] / 2**30, 1),
                    "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                    "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
                }
            )
        return found
    except Exception:  # CuPy installed without a usable driver/GPU
        return []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def paths() -> dict[str, str]:
    """Which implementations can run here, with the reason when one cannot."""
    from rnn_xp._plan import FORCE_GENERIC

    gpu = bool(gpus())
    has_torch = importlib.util.find_spec("torch") is not None
    if not gpu:
        kernels = "unavailable: no CuPy or no GPU"
    elif FORCE_GENERIC:
        kernels = "forced off by RNN_XP_FORCE_GENERIC"
    else:
        kernels = "available"
    return {
        "cpu (NumPy, in-place loop)": "available",
        "cpu (compiled loop, numba)": "available" if _found("numba") else "unavailable: numba not installed",
        "generic Array-API loop": "available",
        "cuda kernels (CuPy)": kernels,
        "peer torch (CPU)": "available" if has_torch else "unavailable: torch not installed",
        "peer torch cuDNN": "available" if has_torch and gpu and _torch_cuda() else "unavailable: no torch CUDA",
        "peer onnxruntime (CPU)": "available" if _found("onnx") and _found("onnxruntime")
        else "unavailable: onnx/onnxruntime not installed",
        "peer jax (CPU)": "available" if _found("jax") else "unavailable: jax not installed",
    }


def _found(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _version(distribution: str) -> str | None:
    names = [distribution] + (["cupy-cuda13x", "cupy-cuda12x"] if distribution == "cupy" else [])
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def format_text(info: dict[str, Any]) -> str:
    """The description as the lines ``rnn-xp info`` prints."""
    lines = [
        f"rnn_xp {info['versions']['rnn_xp']} on Python {info['python']} ({info['platform']})",
        f"CPU: {info['cpu']['model']}, {info['cpu']['logical_cores']} logical cores "
        f"({info['cpu']['usable_cpus']} usable by this process), BLAS {info['cpu']['blas']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v is not None)
        + ("; not installed: " + ", ".join(k for k, v in info["versions"].items() if v is None)
           if any(v is None for v in info["versions"].values()) else ""),
    ]
    if info["gpus"]:
        for gpu in info["gpus"]:
            lines.append(
                f"GPU {gpu['index']}: {gpu['name']} (sm_{gpu['compute_capability'].replace('.', '')}, "
                f"{gpu['multiprocessors']} SMs, {gpu['memory_gib']} GiB), CUDA runtime {gpu['cuda_runtime']}, "
                f"driver {gpu['cuda_driver']}"
            )
    else:
        lines.append("GPU: none found (CuPy missing or no CUDA device)")
    lines.append("paths:")
    lines += [f"  {name}: {state}" for name, state in info["paths"].items()]
    lines.append(f"CPU loop choice: {info['loop plan']}")
    return "\n".join(lines)
