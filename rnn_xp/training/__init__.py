"""Training: output head, embedding, losses, optimizers, clipping, truncated-BPTT streams, checkpoints, examples.

Everything here is written against the Array API (it runs on NumPy, CuPy and the rest), with each backward beside
the forward it inverts.
"""

from rnn_xp.training.data import Shuffler
from rnn_xp.training.layers import Embedding, Linear
from rnn_xp.training.losses import mse, mse_backward, softmax_cross_entropy, softmax_cross_entropy_backward
from rnn_xp.training.models import SequenceModel, SimpleRNN
from rnn_xp.training.optim import SGD, Adagrad, Adam, clip_grad_norm

__all__ = [
    "SGD", "Adagrad", "Adam", "Embedding", "Linear", "SequenceModel", "Shuffler", "SimpleRNN", "clip_grad_norm", "mse",
    "mse_backward", "softmax_cross_entropy", "softmax_cross_entropy_backward",
]
