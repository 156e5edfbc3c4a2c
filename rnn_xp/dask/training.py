"""Data-parallel training of an :mod:`rnn_xp.training` model on a Dask cluster.

One step: the client sends the parameters out (one copy per worker), each shard of the batch (a chunk of a dask
array along its batch axis) computes its loss and gradients on the worker that holds it, a tree of pairwise sums
reduces the shards' weighted gradients to one, and the optimizer steps once, on the client. Truncated BPTT keeps
each shard's carried state on its worker, beside its streams: the state never travels.
"""

from __future__ import annotations

import math
from typing import Any

import cloudpickle
import dask.array as da
import numpy as np
from distributed import Client, Future, default_client

from rnn_xp.dask import _shard
from rnn_xp.training.models import SequenceModel, SimpleRNN
from rnn_xp.training.optim import Optimizer, clip_grad_norm


class DataParallel:
    """Train ``model`` with ``optimizer`` on batches sharded across the workers of a Dask cluster.

    A step gives the same parameters as one single-process step on the whole batch (float64: to ~1e-15
    relative): the loss is the mean over the *whole* batch, so each shard's gradient enters weighted by its share
    of what the loss counts — its unmasked rows for cross-entropy, its elements for MSE — not by 1/shards. Uneven
    shards (5 and 3 sequences, or shards with more padding than others) therefore give exactly the whole-batch
    gradient. Clipping by global norm and the optimizer then run once on the summed gradient, on the client, which
    keeps the model and the optimizer's state (so checkpoints work as in a single process).

    Parameters
    ----------
    model : SequenceModel or SimpleRNN, on NumPy (``device="cpu"``) or CuPy arrays, without dropout
    optimizer : an :mod:`rnn_xp.training.optim` optimizer
    loss : {"cross_entropy", "mse"}
        cross_entropy: :func:`~rnn_xp.training.softmax_cross_entropy` over every step's logits (padded steps
        masked out when ``lengths`` is given) or over the many-to-one logits; targets are class indices shaped
        like the logits without their last axis. mse: :func:`~rnn_xp.training.mse`, targets shaped like the
        outputs.
    clip_norm : float, optional
        Clip the summed gradient to this global norm (``clip_grad_norm``).
    client : distributed.Client, optional
        The cluster; the current default client when omitted.
    timeout_s : float, optional
        How long a step waits for its summed gradient before a TimeoutError (default: no limit).

    Examples
    --------
    >>> from distributed import Client, LocalCluster                        # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))    # doctest: +SKIP
    >>> trainer = DataParallel(model, Adam(lr=1e-3), loss="mse", client=client)  # doctest: +SKIP
    >>> loss = trainer.step(x, y)       # x, y: dask arrays chunked along the batch  # doctest: +SKIP
    """

    def __init__(self, model: Any, optimizer: Optimizer, *, loss: str = "cross_entropy",
                 clip_norm: float | None = None, client: Client | None = None,
                 timeout_s: float | None = None) -> None:
        if not isinstance(model, SequenceModel | SimpleRNN):
            msg = f"model must be an rnn_xp.training SequenceModel or SimpleRNN; got {type(model).__name__}"
            raise TypeError(msg)
        if not isinstance(optimizer, Optimizer):
            msg = f"optimizer must be an rnn_xp.training optimizer (SGD, Adam, Adagrad); got {type(optimizer).__name__}"
            raise TypeError(msg)
        if loss not in _shard.LOSSES:
            msg = f"loss must be one of {_shard.LOSSES}; got {loss!r}"
            raise ValueError(msg)
        if clip_norm is not None and (isinstance(clip_norm, bool) or not isinstance(clip_norm, int | float)
                                      or not math.isfinite(clip_norm) or clip_norm <= 0):
            msg = f"clip_norm must be a finite positive number or None; got {clip_norm!r}"
            raise ValueError(msg)
        if model.rnn.dropout > 0.0 and model.rnn.training:
            msg = (
                f"model has dropout={model.rnn.dropout} in training mode; DataParallel does not draw dropout masks "
                "across shards yet: use dropout=0 or model.rnn.eval()"
            )
            raise ValueError(msg)
        self.model, self.optimizer, self.loss, self.clip_norm = model, optimizer, loss, clip_norm
        self.timeout_s = timeout_s
        self.client = client if client is not None else default_client()
        # The model's structure travels once; each task loads its own replica and sets the step's parameters.
        self._model_blob = self.client.scatter(cloudpickle.dumps(model), broadcast=True, hash=False)
        self._workers: list[str] = []
        self._states: list[Future] | None = None
        self._stream_chunks: tuple[int, ...] | None = None
        self.last_grad_norm: float | None = None

    @property
    def batch_axis(self) -> int:
        """The batch axis of the model's inputs: 0 if batch-first (SimpleRNN, or an RNN built so), else 1."""
        return 0 if self.model.rnn.batch_first else 1

    def step(self, inputs: Any, targets: Any, *, lengths: Any | None = None) -> float:
        """One optimizer step on a batch of independent sequences (each starts from a zero state).

        Parameters
        ----------
        inputs : dask array, tokens (T, B) / features (T, B, I) (batch-first if the model is), chunked along the
            batch axis only; each chunk is a shard
        targets : dask or NumPy array, class indices shaped like the logits without their last axis (cross_entropy)
            or shaped like the outputs (mse); split like ``inputs`` along the batch
        lengths : dask or NumPy array (B,), optional

        Returns
        -------
        float : the loss of the whole batch (its mean), before the step
        """
        shards = self._shards(inputs, targets, lengths, None)
        params = self._send_params()
        results = [self._submit(shard, params, None, None) for shard in shards]
        return self._reduce_and_step(results)

    def stream_step(self, inputs: Any, targets: Any, *, lengths: Any | None = None, reset: Any | None = None) -> float:
        """One truncated-BPTT step over B streams: each shard starts from its own carried state (zeroed where
        ``reset``), and its final state stays on its worker for the next chunk, beside its streams.

        The batch must keep the chunks of the first stream step (the shards' states are that size), and each
        shard runs on the same worker every step. ``lengths[b] < T`` where stream b's document ends in the chunk.
        Equal, chunk for chunk, to the single-process loop of :class:`rnn_xp.training.charlm.CharLMTrainer`.

        Parameters
        ----------
        inputs, targets, lengths : as :meth:`step`
        reset : dask or NumPy bool array (B,), optional — streams that start a new document (state zeroed)

        Returns
        -------
        float : the chunk's loss (mean over its real targets), before the step
        """
        if not isinstance(self.model, SequenceModel):
            msg = f"stream_step needs a SequenceModel (it returns the state to carry); got {type(self.model).__name__}"
            raise TypeError(msg)
        chunks = self._batch_chunks(inputs)
        if self._stream_chunks is not None and chunks != self._stream_chunks:
            msg = (
                f"inputs must keep the batch chunks of the first stream step {self._stream_chunks} (each shard's "
                f"carried state has that many streams); got {chunks}. Call reset_streams() to start over"
            )
            raise ValueError(msg)
        shards = self._shards(inputs, targets, lengths, reset)
        states = self._states if self._states is not None else [None] * len(shards)
        params = self._send_params()
        results = [
            self._submit(shard, params, state, shard["reset"]) for shard, state in zip(shards, states, strict=True)
        ]
        # Each new state is picked out on the worker that computed it: it never leaves that worker.
        self._states = [
            self.client.submit(_shard.carried_state, result, workers=[shard["worker"]], allow_other_workers=False,
                               pure=False)
            for result, shard in zip(results, shards, strict=True)
        ]
        self._stream_chunks = chunks
        return self._reduce_and_step(results)

    def reset_streams(self) -> None:
        """Forget the carried states (the next stream step starts from zeros, with any batch chunks)."""
        self._states, self._stream_chunks = None, None

    def carried_states(self) -> list[Any]:
        """The shards' carried states, fetched from their workers (for inspection; training never fetches them)."""
        if self._states is None:
            return []
        return list(self.client.gather(self._states))

    def state_locations(self) -> list[set[str]]:
        """For each shard, the workers that hold its carried state."""
        if self._states is None:
            return []
        holders = self.client.who_has(self._states)
        return [set(holders[state.key]) for state in self._states]

    # -- the pieces of a step ------------------------------------------------------------------------------
    def _batch_chunks(self, inputs: Any) -> tuple[int, ...]:
        if not isinstance(inputs, da.Array):
            msg = f"inputs must be a dask array chunked along the batch; got {type(inputs).__name__}"
            raise TypeError(msg)
        axis = self.batch_axis
        if inputs.ndim not in (2, 3) or axis >= inputs.ndim:
            msg = f"inputs must be 2-D tokens or 3-D features with the batch on axis {axis}; got shape {inputs.shape}"
            raise ValueError(msg)
        split = [a for a in range(inputs.ndim) if a != axis and len(inputs.chunks[a]) > 1]
        if split:
            fix = ", ".join(f"{a}: -1" for a in split)
            msg = (
                f"inputs must be chunked along the batch axis {axis} only; got chunks {inputs.chunks}. "
                f"Rechunk first: inputs.rechunk({{{fix}}})"
            )
            raise ValueError(msg)
        return tuple(int(n) for n in inputs.chunks[axis])

    def _shards(self, inputs: Any, targets: Any, lengths: Any | None, reset: Any | None) -> list[dict[str, Any]]:
        chunks = self._batch_chunks(inputs)
        batch = sum(chunks)
        workers = self._worker_list()
        pieces: dict[str, list[Any] | None] = {
            "inputs": _blocks(inputs, self.batch_axis, chunks, "inputs"),
            "targets": _blocks(targets, self._target_axis(targets), chunks, "targets"),
            "lengths": None if lengths is None else _blocks(lengths, 0, chunks, "lengths", expected=(batch,)),
            "reset": None if reset is None else _blocks(reset, 0, chunks, "reset", expected=(batch,)),
        }
        present = {name: blocks for name, blocks in pieces.items() if blocks is not None}
        shards = []
        for index in range(len(chunks)):
            worker = workers[index % len(workers)]
            shard: dict[str, Any] = {"worker": worker, "lengths": None, "reset": None}
            # The shard's rows are computed (or loaded) on the worker that will use them; NumPy rows are sliced
            # here and sent to it alone.
            lazy = [name for name, blocks in present.items() if _is_lazy(blocks[index])]
            ready = [name for name in present if name not in lazy]
            if lazy:
                computed = self.client.compute([present[name][index] for name in lazy], workers=[worker])
                shard.update(zip(lazy, computed, strict=True))
            if ready:
                sent = self.client.scatter([present[name][index] for name in ready], workers=[worker], hash=False)
                shard.update(zip(ready, sent, strict=True))
            shards.append(shard)
        return shards

    def _target_axis(self, targets: Any) -> int:
        # Per-step targets follow the inputs' layout; many-to-one targets ((B,) or (B, out)) have the batch first.
        many_to_one = (isinstance(self.model, SequenceModel) and self.model.many_to_one) or (
            isinstance(self.model, SimpleRNN) and not self.model.return_sequences
        )
        return 0 if many_to_one else self.batch_axis

    def _worker_list(self) -> list[str]:
        if not self._workers:
            # Client.nthreads asks the scheduler each time; scheduler_info() can return the client's periodic
            # cached copy, which in distributed 2026.8 holds no per-worker entries.
            self._workers = sorted(self.client.nthreads())
        if not self._workers:
            msg = "the Dask cluster has no workers"
            raise RuntimeError(msg)
        return self._workers

    def _send_params(self) -> Future:
        """This step's parameters, sent once to every worker (one copy each, whatever its number of shards)."""
        return self.client.scatter([self.model.parameters()], broadcast=True, hash=False)[0]

    def _submit(self, shard: dict[str, Any], params: Future, state: Any, reset: Any) -> Future:
        return self.client.submit(
            _shard.shard_step, self._model_blob, params, shard["inputs"], shard["targets"],
            shard["lengths"], state, reset, self.loss, workers=[shard["worker"]], allow_other_workers=False,
            pure=False,
        )

    def _reduce_and_step(self, results: list[Future]) -> float:
        level = [self.client.submit(_shard.contribution, r, pure=False) for r in results]
        while len(level) > 1:  # pairwise sums: depth log2(shards), each worker sends one gradient per level
            pairs = zip(level[::2], level[1::2], strict=False)  # an odd one out waits for the next level
            paired = [self.client.submit(_shard.add, a, b, pure=False) for a, b in pairs]
            level = paired + level[len(paired) * 2 :]
        total: _shard.Contribution = level[0].result(timeout=self.timeout_s)
        count = max(total.count, 1.0)  # the losses divide by max(count, 1): no real target gives a zero loss
        grads = {name: grad / count for name, grad in total.grads.items()}
        if self.clip_norm is not None:
            grads, self.last_grad_norm = clip_grad_norm(grads, self.clip_norm)
        self.model.set_parameters(self.optimizer.step(self.model.parameters(), grads))
        return total.loss_sum / count


def _is_lazy(block: Any) -> bool:
    return hasattr(block, "__dask_graph__")


def _blocks(array: Any, axis: int, chunks: tuple[int, ...], argname: str,
            expected: tuple[int, ...] | None = None) -> list[Any]:
    """``array`` split like the batch: a dask array's blocks (rechunked to match), or a NumPy array's slices."""
    if not isinstance(array, da.Array):
        if not isinstance(array, np.ndarray):
            msg = f"{argname} must be a dask or NumPy array; got {type(array).__name__}"
            raise TypeError(msg)
    if expected is not None and tuple(array.shape) != expected:
        msg = f"{argname} must have shape {expected}; got {tuple(array.shape)}"
        raise ValueError(msg)
    if axis >= array.ndim or array.shape[axis] != sum(chunks):
        msg = f"{argname} must have the batch ({sum(chunks)}) on axis {axis}; got shape {tuple(array.shape)}"
        raise ValueError(msg)
    if isinstance(array, np.ndarray):
        edges = np.cumsum((0, *chunks))
        return [np.take(array, np.arange(edges[i], edges[i + 1]), axis=axis) for i in range(len(chunks))]
    target = tuple(chunks if a == axis else (int(array.shape[a]),) for a in range(array.ndim))
    blocks = array.rechunk(target).to_delayed()
    return list(np.moveaxis(blocks, axis, 0).reshape(len(chunks), -1)[:, 0])
