"""Registers, stack frame and spills of every kernel instance, as ptxas reports them (no GPU needed).

    python tools/ptxas_report.py [--arch sm_90] [SOURCE.cu ...]      (default: every .cu under rnn_xp/cuda)

Compiles each source with nvcc (``-DRNN_XP_EXPLICIT_INSTANTIATION -Xptxas -v``) and prints one line per kernel
instance; exits non-zero if any spills or has a stack frame. tests/test_cuda.py runs the same check.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parents[1] / "rnn_xp" / "cuda"


@dataclass(frozen=True)
class Resources:
    """One compiled kernel instance: its demangled-enough name and what ptxas gave it."""

    kernel: str  # e.g. "rnn_forward_registers<float, 128, 1>"
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int


_NAME = re.compile(r"_Z\d+(rnn_\w+?)I([fd])((?:Li\d+E)*)E")


def readable(mangled: str) -> str:
    """``_Z21rnn_forward_registersIfLi128ELi1EE...`` -> ``rnn_forward_registers<float, 128, 1>``."""
    match = _NAME.match(mangled)
    if match is None:
        return mangled
    name, kind, numbers = match.groups()
    args = ["float" if kind == "f" else "double", *re.findall(r"Li(\d+)E", numbers)]
    return f"{name}<{', '.join(args)}>"


def parse(text: str) -> list[Resources]:
    """The kernel instances of ``nvcc -Xptxas -v`` output."""
    found: list[Resources] = []
    name, stack, stores, loads = None, 0, 0, 0
    for line in text.splitlines():
        if match := re.search(r"Compiling entry function '(\S+)'", line):
            name = match.group(1)
        elif (match := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                                 line)) and name:
            stack, stores, loads = (int(n) for n in match.groups())
        elif (match := re.search(r"Used (\d+) registers", line)) and name:
            found.append(Resources(readable(name), int(match.group(1)), stack, stores, loads))
            name = None
    return found


def compile_report(source: Path, arch: str = "sm_90", nvcc: str | None = None) -> list[Resources]:
    """Compile ``source`` and return what ptxas said about each kernel instance.

    Raises
    ------
    RuntimeError
        nvcc is missing or the compilation failed.
    """
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        msg = "nvcc is not installed"
        raise RuntimeError(msg)
    with tempfile.TemporaryDirectory() as work:
        command = [nvcc, "-std=c++17", f"-arch={arch}", "-DRNN_XP_EXPLICIT_INSTANTIATION", "-Xptxas", "-v",
                   f"-I{CUDA_DIR}", "-c", str(source), "-o", str(Path(work) / "kernel.o")]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"nvcc failed on {source.name}:\n{result.stderr[-4000:]}"
        raise RuntimeError(msg)
    return parse(result.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", type=Path)
    parser.add_argument("--arch", default="sm_90")
    options = parser.parse_args(argv)
    bad = 0
    for source in options.sources or sorted(CUDA_DIR.glob("*.cu")):
        for r in compile_report(source, options.arch):
            flag = "" if r.stack_bytes == r.spill_stores == r.spill_loads == 0 else "  <- stack/spills"
            bad += bool(flag)
            print(f"{r.kernel:45s} {r.registers:3d} registers, {r.stack_bytes} bytes stack, "
                  f"{r.spill_stores}/{r.spill_loads} bytes spilled (stores/loads){flag}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
