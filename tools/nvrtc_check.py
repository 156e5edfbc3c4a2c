"""Compile the .cu sources with NVRTC, as CuPy's RawModule will at run time, without a GPU.

nvcc accepts things NVRTC does not (host headers, implicit includes), so this catches run-time compile errors
before a GPU ever sees the code. Needs libnvrtc (``pip install nvidia-cuda-nvrtc``); prints one line per source
and architecture and exits non-zero on any error or warning.

    python tools/nvrtc_check.py [--arch sm_80 --arch sm_90]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parents[1] / "rnn_xp" / "cuda"
sys.path.insert(0, str(CUDA_DIR.parents[1]))
from rnn_xp.cuda._launch import (  # noqa: E402
    LANE_SPLITS,
    LANE_TILES,
    REGISTER_BATCH_TILES,
    REGISTER_COLUMNS,
)

# Every instance the launch plans can pick: (TB, LB) pairs of the persistent kernels in both types, (KR, BG) pairs of
# the register kernels in float.
_PERSISTENT_ARGS = [f"{tb}, {lb}" for tb in LANE_TILES for lb in LANE_SPLITS]
SOURCES = {
    "rnn_persistent.cu": [
        f"{kernel}<{ctype}, {args}>"
        for kernel in ("rnn_forward_persistent", "rnn_backward_persistent")
        for args in _PERSISTENT_ARGS
        for ctype in ("float", "double")
    ],
    "rnn_registers.cu": [
        f"{kernel}<float, {columns}, {tile}>"
        for kernel in ("rnn_forward_registers", "rnn_backward_registers")
        for columns in REGISTER_COLUMNS
        for tile in REGISTER_BATCH_TILES
    ],
    "rnn_step.cu": [f"{kernel}<{ctype}>" for kernel in ("rnn_forward_step", "rnn_backward_step")
                    for ctype in ("float", "double")],
}


def find_nvrtc() -> str | None:
    candidates = []
    for root in sys.path:
        candidates += glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so*"))
        candidates += glob.glob(os.path.join(root, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
    candidates += glob.glob("/usr/local/cuda/lib64/libnvrtc.so*")
    candidates = [c for c in candidates if "builtins" not in c]
    return candidates[0] if candidates else None


def compile_source(lib: ctypes.CDLL, source: str, kernels: list[str], arch: str) -> tuple[bool, str]:
    program = ctypes.c_void_p()
    code = (CUDA_DIR / source).read_bytes()
    status = lib.nvrtcCreateProgram(ctypes.byref(program), code, source.encode(), 0, None, None)
    if status != 0:
        return False, f"nvrtcCreateProgram failed ({status})"
    for kernel in kernels:
        lib.nvrtcAddNameExpression(program, kernel.encode())
    include = "/usr/local/cuda/include"
    options = [b"-std=c++17", f"-I{CUDA_DIR}".encode(), f"--gpu-architecture={arch}".encode(), b"-default-device"]
    # CuPy puts the CUDA headers and its bundled CCCL (libcu++) on NVRTC's include path; do the same.
    for directory in (include, f"{include}/cccl"):
        if Path(directory).exists():
            options.append(f"-I{directory}".encode())
    array = (ctypes.c_char_p * len(options))(*options)
    status = lib.nvrtcCompileProgram(program, len(options), array)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    text = log.value.decode(errors="replace").strip()
    lib.nvrtcDestroyProgram(ctypes.byref(program))
    return status == 0 and "warning" not in text.lower(), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", default=None)
    args = parser.parse_args()
    path = find_nvrtc()
    if path is None:
        print("libnvrtc not found: pip install nvidia-cuda-nvrtc")
        return 2
    lib = ctypes.CDLL(path)
    failed = False
    for arch in args.arch or ["sm_80", "sm_90"]:
        for source, kernels in SOURCES.items():
            ok, log = compile_source(lib, source, kernels, arch)
            print(f"{'ok  ' if ok else 'FAIL'} {source} {arch}" + (f"\n{log}" if log else ""))
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
