"""Training: output head, embedding, losses, optimizers, clipping, truncated-BPTT streams, checkpoints, examples.

Everything here is written against the Array API (it runs on NumPy, CuPy and the rest), with each backward beside
the forward it inverts.

Examples
--------
Train on your own data: a many-to-one classifier over variable-length sequences (the last state of each sequence
at its own end feeds a linear head), with cross-entropy, backward, clipping, an optimizer step and a held-out
evaluation.

>>> import numpy as np
>>> from rnn_xp import RNN
>>> from rnn_xp.training import (Adam, Linear, SequenceModel, Shuffler, clip_grad_norm, softmax_cross_entropy,
...                              softmax_cross_entropy_backward)
>>> rng = np.random.default_rng(0)               # your data: padded (N, T, features), lengths (N,), labels (N,)
>>> x = rng.standard_normal((600, 20, 3)).astype(np.float32)
>>> lengths = rng.integers(5, 21, size=600)
>>> labels = np.array([x[i, :n, 0].sum() > 0 for i, n in enumerate(lengths)], dtype=np.int64)
>>> model = SequenceModel(RNN(3, 32, batch_first=True, seed=0), Linear(32, 2, seed=1), many_to_one=True)
>>> optimizer, batches = Adam(lr=3e-3), Shuffler(500, 32, seed=0)   # the first 500 train, the rest held out
>>> for step in range(300):
...     i = batches.next_batch()
...     logits, _ = model(x[i], lengths=lengths[i])                  # (32, 2)
...     loss, cache = softmax_cross_entropy(logits, labels[i])
...     model.backward(softmax_cross_entropy_backward(cache))        # fills model.grads
...     grads, norm = clip_grad_norm(model.grads, 1.0)
...     model.set_parameters(optimizer.step(model.parameters(), grads))
>>> logits, _ = model(x[500:], lengths=lengths[500:])
>>> accuracy = np.mean(np.argmax(logits, axis=1) == labels[500:])    # 0.95 here; chance is 0.5
>>> bool(accuracy > 0.85)
True

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) are safetensors files holding the parameters, the
optimizer's state and a JSON state of your own.
"""

from rnn_xp.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnn_xp.training.data import Shuffler
from rnn_xp.training.layers import Embedding, Linear
from rnn_xp.training.losses import mse, mse_backward, softmax_cross_entropy, softmax_cross_entropy_backward
from rnn_xp.training.models import SequenceModel, SimpleRNN
from rnn_xp.training.optim import SGD, Adagrad, Adam, clip_grad_norm

__all__ = [
    "SGD", "Adagrad", "Adam", "CheckpointError", "Embedding", "Linear", "SequenceModel", "Shuffler", "SimpleRNN",
    "clip_grad_norm", "load_checkpoint", "mse", "mse_backward", "save_checkpoint", "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]
