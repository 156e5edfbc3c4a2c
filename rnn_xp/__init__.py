"""rnn_xp: a vanilla (Elman) RNN equal to torch.nn.RNN, written once against the Python Array API.

``rnn_xp.RNN`` is the layer (NumPy on ``device="cpu"``, CuPy with fused kernels on ``device="cuda"``);
``rnn_xp.functional`` runs the same computation on arrays of any Array-API namespace.
"""

from __future__ import annotations

from rnn_xp._device import DeviceUnavailableError
from rnn_xp.layer import RNN

__version__ = "0.1.0"
__all__ = ["RNN", "DeviceUnavailableError", "__version__"]
