"""Where an optional package is missing, the error names a ``pip install`` that works from PyPI (rnn_xp itself is
not on PyPI, so ``pip install 'rnn-xp[extra]'`` would not), each checked in a fresh interpreter in which importing
the package fails (``rnn_xp.onnx.export``'s, in-process, is in test_onnx_export.py; the benchmark's matplotlib
line in test_cli.py; dask's in test_dask_absent.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _without(packages: list[str], code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    hide = "import sys; " + "; ".join(f"sys.modules[{name!r}] = None" for name in packages) + "\n"
    return subprocess.run([sys.executable, "-c", hide + code], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)


@pytest.mark.parametrize(("packages", "code", "expected"), [
    (["cupy"], "import rnn_xp; rnn_xp.RNN(2, 3, device='cuda')",
     "device='cuda' needs CuPy, which is not installed: pip install cupy-cuda13x (CUDA 13) or cupy-cuda12x (CUDA 12)"),
    (["torch"], "import rnn_xp.torch",
     "rnn_xp.torch needs PyTorch: pip install torch (on Linux add --index-url https://download.pytorch.org/whl/cpu"),
    (["numba"], "import numpy as np, rnn_xp; rnn_xp.RNN(2, 3, loop='compiled')(np.zeros((4, 1, 2), np.float32))",
     "loop='compiled' needs numba (pip install numba)"),
], ids=["cupy", "torch", "numba"])
def test_the_error_names_a_pip_install_that_works(packages: list[str], code: str, expected: str,
                                                   tmp_path: Path) -> None:
    run = _without(packages, code, tmp_path)
    assert run.returncode == 1, run.stderr
    assert expected in run.stderr, run.stderr
    assert "rnn-xp[" not in run.stderr


def test_a_missing_peer_is_named_with_its_package(tmp_path: Path) -> None:
    code = ("from rnn_xp.benchmark.peers_jax import Jax\nfrom rnn_xp.benchmark.peers_onnx import OnnxRuntime\n"
            "from rnn_xp.benchmark.cases import Case\n"
            "import importlib.util\nimportlib.util.find_spec = lambda name, *a: None\n"
            "print(Jax().unavailable(Case(2, 1, 1, 1))); print(OnnxRuntime().unavailable(Case(2, 1, 1, 1)))")
    run = _without([], code, tmp_path)
    assert run.stdout == "jax is not installed (pip install jax)\nonnx is not installed (pip install onnx)\n", run.stderr
