"""The emulated GPU for a test: the stand-in CuPy in ``sys.modules``, rnn_xp's kernels built for the CPU, and a
record of every launch (by kernel, and in the stand-in's ledger)."""

from __future__ import annotations

import functools
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest
from cuda_emulation import fake_cupy, launcher

from rnn_xp import tuning
from rnn_xp.cuda import _module, recurrence

# A small device: problems of a few dozen units are cut into several slices, groups and tiles, as large ones are on
# an H100; and one with an H100's numbers, where the same problems fit one block.
DEVICES = {"tight": dict(sm_count=4, shared_optin=16 * 1024), "h100": dict(sm_count=132, shared_optin=227 * 1024)}


class Emulated:
    """The swapped-in CuPy and launcher, and a record of the kernels each call launched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, device: str) -> None:
        self.cupy = fake_cupy.make_module(**DEVICES[device])
        self.ledger = self.cupy.ledger
        self.launched: Counter[str] = Counter()
        monkeypatch.setitem(sys.modules, "cupy", self.cupy)
        for name, module in fake_cupy.make_cublas().items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(_module, "kernel", self._kernel)
        monkeypatch.setattr(_module, "_shared_set", {})
        recurrence.clear_caches()
        # a cache of GPU names of its own, so the emulated device's name neither meets nor outlives a real one's
        monkeypatch.setattr(tuning, "_gpu_name", functools.lru_cache(maxsize=16)(tuning._gpu_name.__wrapped__))

    def _kernel(self, name: str, dtype: Any, template_args: tuple[int, ...] = ()) -> Any:
        function = launcher.kernel(name, dtype, template_args)
        launched, ledger = self.launched, self.ledger

        class Recording:
            def __call__(self, *args: Any, **kwargs: Any) -> None:
                launched[name] += 1
                ledger.operation(f"kernel {name}", allocates=False)
                function(*args, **kwargs)

            def __setattr__(self, attribute: str, value: Any) -> None:
                setattr(function, attribute, value)

        return Recording()

    def on_device(self, array: np.ndarray) -> Any:
        return self.cupy.asarray(np.array(array, copy=True))


