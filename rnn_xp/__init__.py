"""rnn_xp: a vanilla (Elman) RNN equal to torch.nn.RNN, written once against the Python Array API.

``rnn_xp.RNN`` is the layer (NumPy on ``device="cpu"``, CuPy with fused kernels on ``device="cuda"``);
``rnn_xp.functional`` runs the same computation on arrays of any Array-API namespace; ``rnn_xp.training`` has the
heads, losses, optimizers and checkpoints to train with; ``rnn_xp.torch.RNN`` is a drop-in for ``torch.nn.RNN`` on
rnn_xp's loops; ``rnn_xp.onnx.export`` writes a model as ONNX. The last three are imported on first use, so
``import rnn_xp`` stays light and never imports torch or onnx.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnn_xp import functional
from rnn_xp._device import DeviceUnavailableError
from rnn_xp.layer import RNN

__version__ = "0.1.0"
__all__ = ["RNN", "DeviceUnavailableError", "__version__", "functional", "training"]

_LAZY_SUBPACKAGES = ("onnx", "torch", "training")


def __getattr__(name: str) -> Any:
    """``rnn_xp.training``, ``rnn_xp.torch`` and ``rnn_xp.onnx`` without importing them first (PEP 562)."""
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"rnn_xp.{name}")
    msg = f"module 'rnn_xp' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))
