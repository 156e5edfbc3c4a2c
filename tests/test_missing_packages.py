"""Where an optional package is missing, the error names a ``pip install`` that works from PyPI (rnn_xp itself is
not on PyPI, so ``pip install 'rnn-xp[extra]'`` would not), each checked in a fresh interpreter in which importing
the package fails."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _without(packages: list[str], code: str) -> subprocess.CompletedProcess[str]:
    hide = "import sys; " + "; ".join(f"sys.modules[{name!r}] = None" for name in packages) + "\n"
    return subprocess.run([sys.executable, "-c", hide + code], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize(("packages", "code", "expected"), [
    (["cupy"], "import rnn_xp; rnn_xp.RNN(2, 3, device='cuda')",
     "device='cuda' needs CuPy, which is not installed: pip install cupy-cuda13x (CUDA 13) or cupy-cuda12x (CUDA 12)"),
    (["torch"], "import rnn_xp.torch",
     "rnn_xp.torch needs PyTorch: pip install torch (on Linux add --index-url https://download.pytorch.org/whl/cpu"),
    (["onnx"], "import numpy as np, rnn_xp, rnn_xp.onnx; rnn_xp.onnx.export(rnn_xp.RNN(2, 3), 'm.onnx')",
     "rnn_xp.onnx.export needs the onnx package: pip install onnx"),
    (["numba"], "import numpy as np, rnn_xp; rnn_xp.RNN(2, 3, loop='compiled')(np.zeros((4, 1, 2), np.float32))",
     "loop='compiled' needs numba (pip install numba)"),
], ids=["cupy", "torch", "onnx", "numba"])
def test_the_error_names_a_pip_install_that_works(packages: list[str], code: str, expected: str) -> None:
    run = _without(packages, code)
    assert run.returncode == 1, run.stderr
    assert expected in run.stderr, run.stderr
    assert "rnn-xp[" not in run.stderr


def test_a_missing_peer_is_named_with_its_package() -> None:
    code = ("from rnn_xp.benchmark.peers_jax import Jax\nfrom rnn_xp.benchmark.peers_onnx import OnnxRuntime\n"
            "from rnn_xp.benchmark.cases import Case\n"
            "import importlib.util\nimportlib.util.find_spec = lambda name, *a: None\n"
            "print(Jax().unavailable(Case(2, 1, 1, 1))); print(OnnxRuntime().unavailable(Case(2, 1, 1, 1)))")
    run = _without([], code)
    assert run.stdout == "jax is not installed (pip install jax)\nonnx is not installed (pip install onnx)\n", run.stderr
