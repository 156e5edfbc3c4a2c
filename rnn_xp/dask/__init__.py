"""rnn_xp on a Dask cluster: batch-sharded inference and data-parallel training.

Needs the optional dependency ``rnn-xp[dask]`` (``dask[array]`` and ``distributed``). Every chunk of a sharded
batch runs the fast path of its array type (the CPU loop the plan picks, CuPy's kernels); training pins each shard to
its worker, and inference leaves placement to the scheduler, which keeps a chunk larger than the parameters where it
lives.

- :func:`rnn_forward`: lazy ``(out, h_n)`` dask arrays for a dask array ``x`` chunked along its batch axis.
- :class:`DataParallel`: one optimizer step of an :mod:`rnn_xp.training` model from the gradients of the shards
  of a batch (a tree-summed reduction), and truncated BPTT with each shard's carried state kept on its worker.
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only where dask is absent
    msg = f"rnn_xp.dask needs dask[array] and distributed: pip install 'dask[array]' distributed ({error})"
    raise ImportError(msg) from error

from rnn_xp.dask.forward import rnn_forward
from rnn_xp.dask.training import DataParallel

__all__ = ["DataParallel", "rnn_forward"]
