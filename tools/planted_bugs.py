"""Plant one bug at a time in a copy of the CUDA sources and show that the CPU-emulated kernel tests catch it.

    python tools/planted_bugs.py            (from the project root, in the environment that runs the tests)

For each bug: copy the repository's rnn_xp/ and tests/ into a temporary folder, edit one line of the copy's .cu /
.cuh sources, run the emulated kernel tests there (`pytest -m cuda_emulated` on tests/test_cuda_emulated.py and
tests/test_cuda_calls.py), and print how many tests failed. A bug that no test catches is
reported and makes the exit status non-zero.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file under rnn_xp/cuda, text to find, replacement)
BUGS = [
    ("reverse direction walks forward in time", "rnn_common.cuh",
     "return direction ? steps - 1 - step : step;", "return step;"),
    ("lengths ignored", "rnn_common.cuh", "return !lengths || t < lengths[b];", "return true;"),
    ("a length outside [1, T] not poisoned", "rnn_common.cuh",
     "return !lengths || (lengths[b] >= 1 && lengths[b] <= steps);", "return true;"),
    ("out not zeroed on padding", "rnn_common.cuh", "return !valid ? quiet_nan(T(0)) : (in ? value : T(0));",
     "return !valid ? quiet_nan(T(0)) : value;"),
    ("the group counters never reset (persistent)", "rnn_persistent.cu",
     "if (reset_at != 0u && before + 1u == reset_at) atomicExch(counter, 0u);", "(void)before;"),
    ("h0 not copied beside the states (per-step path)", "rnn_step.cu",
     "        initial[at] = previous;\n", ""),
    ("barrier between the products and the epilogue removed (forward)", "rnn_persistent.cu",
     "            rnn_xp::partial_products(s, padded);\n            __syncthreads();\n#pragma unroll\n"
     "            for (int e = 0; e < 2; ++e) {\n                const int o = threadIdx.x + e * blockDim.x;\n"
     "                if (o >= Tl::kBatch * Tl::kRows) break;",
     "            rnn_xp::partial_products(s, padded);\n#pragma unroll\n"
     "            for (int e = 0; e < 2; ++e) {\n                const int o = threadIdx.x + e * blockDim.x;\n"
     "                if (o >= Tl::kBatch * Tl::kRows) break;"),
    ("register kernel: no barrier at the end of a forward step", "rnn_registers.cu",
     "        __syncthreads();\n    }\n}\n\n// Backward: thread c owns", "    }\n}\n\n// Backward: thread c owns"),
    ("register kernel: one state buffer read and written in the same step", "rnn_registers.cu",
     "T* current = state + ((step & 1) ^ 1) * BG * stride;", "T* current = state + (step & 1) * BG * stride;"),
    ("register kernel: the columns past KR (shared memory) skipped", "rnn_registers.cu",
     "    for (int k = KR; k < stride; k += 4) {", "    for (int k = stride; k < stride; k += 4) {"),
    ("register kernel: the prefetched projection from the current step", "rnn_registers.cu",
     "rnn_xp::time_index(last ? step : step + 1, steps, direction)", "rnn_xp::time_index(step, steps, direction)"),
    ("register kernel: carried gradient not held on padding (backward)", "rnn_registers.cu",
     "if (t < length[bg]) carry[bg] = acc[bg];", "carry[bg] = acc[bg];"),
    ("register kernel: a block's bias-gradient sum leaves out its last sample", "rnn_registers.cu",
     "for (int bg = 0; bg < BG && b0 + bg < batch; ++bg) {",
     "for (int bg = 0; bg + 1 < BG && b0 + bg < batch; ++bg) {"),
    ("persistent kernel: the bias-gradient sum over a block's samples leaves out the first", "rnn_persistent.cu",
     "for (int b_local = 0; b_local < Tl::kBatch; ++b_local) sum +=",
     "for (int b_local = 1; b_local < Tl::kBatch; ++b_local) sum +="),
    ("per-step path: the bias-gradient sum restarts every step", "rnn_step.cu",
     "bias_partial[at] = step == 0 ? g : bias_partial[at] + g;", "bias_partial[at] = g;"),
    ("group wait skipped (backward)", "rnn_persistent.cu",
     "if (!resident) rnn_xp::wait_for(counter, static_cast<unsigned int>((step + 1) * row_blocks));",
     "(void)counter;"),
]


def main() -> int:
    escaped = 0
    for name, filename, find, replace in BUGS:
        with tempfile.TemporaryDirectory() as work:
            copy = Path(work)
            shutil.copytree(ROOT / "rnn_xp", copy / "rnn_xp")
            shutil.copytree(ROOT / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
            source = copy / "rnn_xp" / "cuda" / filename
            text = source.read_text()
            if text.count(find) != 1:
                print(f"{name}: the text to replace is not found exactly once in {filename}")
                return 2
            source.write_text(text.replace(find, replace))
            env = {**os.environ, "PYTHONPATH": str(copy), "RNN_XP_EMULATION_CACHE": str(copy / ".emulation")}
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-m", "cuda_emulated", "-p", "no:cacheprovider",
                 "tests/test_cuda_emulated.py", "tests/test_cuda_calls.py"],
                cwd=copy, env=env, capture_output=True, text=True, check=False,
            )
            summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
            failed = int(match.group(1)) if (match := re.search(r"(\d+) failed", summary)) else 0
            crashed = result.returncode not in (0, 1)
            print(f"{name}: {summary}" + (f" (pytest exit {result.returncode})" if crashed else ""))
            escaped += failed == 0 and not crashed
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
