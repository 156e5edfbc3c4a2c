"""Without dask: ``import rnn_xp.dask`` says what to install, and ``rnn-xp bench --dask`` is one error line."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter in which importing dask or distributed fails, as where they are not installed.
_WITHOUT_DASK = "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None; "


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT_DASK + code], capture_output=True, text=True, timeout=120,
                          check=False)


def test_import_names_what_to_install() -> None:
    run = _python("import rnn_xp.dask")
    assert run.returncode == 1
    assert "ImportError: rnn_xp.dask needs dask[array] and distributed: pip install 'dask[array]' distributed" in run.stderr


def test_bench_dask_is_one_error_line() -> None:
    run = _python("from rnn_xp.cli import main; main(['bench', '--dask', 'local:2'])")
    assert run.returncode == 2
    assert run.stderr == "rnn-xp: error: argument --dask: needs dask and distributed: pip install 'dask[array]' distributed\n"


def test_the_rest_of_rnn_xp_works() -> None:
    run = _python("import numpy as np, rnn_xp; print(rnn_xp.RNN(2, 3)(np.zeros((4, 1, 2), np.float32))[0].shape)")
    assert run.returncode == 0 and run.stdout == "(4, 1, 3)\n"
