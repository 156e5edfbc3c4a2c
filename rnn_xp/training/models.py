"""Sequence models built from the layer: many-to-many (a label per step) and many-to-one (the last state).

Parameters are exposed as one flat dict with prefixed names (``embedding.weight``, ``rnn.weight_hh_l0``,
``head.bias``) so optimizers and checkpoints see a single mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from rnn_xp._checks import Checked, checked_bool
from rnn_xp._threads import PerThread, PerThreadState
from rnn_xp.layer import RNN
from rnn_xp.training.keras_weights import from_keras, keras_init, to_keras
from rnn_xp.training.layers import Embedding, Linear

INITS = ("torch", "keras")


class SequenceModel(PerThreadState):
    """[Embedding] -> RNN -> Linear head.

    Parameters
    ----------
    rnn : RNN (time-major or batch_first; its layout decides the inputs' layout)
    head : Linear on D*hidden_size features
    embedding : Embedding, optional — then inputs are integer tokens (T, B) instead of features (T, B, I)
    many_to_one : bool
        False: logits for every step, (T, B, out). True: logits of the last state, (B, out) — the state of the
        last layer (both directions concatenated) at each sequence's own last step when ``lengths`` is given.
    """

    grads: dict[str, Any] = PerThread(dict)  # type: ignore[assignment]  # per thread, as the layers' (rnn_xp._threads)
    _h_n_shape: tuple[int, ...] = PerThread(tuple)  # type: ignore[assignment]
    many_to_one: bool = Checked(checked_bool("many_to_one"))  # type: ignore[assignment]  # checked when set, too

    def __init__(self, rnn: RNN, head: Linear, *, embedding: Embedding | None = None, many_to_one: bool = False):
        self.rnn, self.head, self.embedding, self.many_to_one = rnn, head, embedding, many_to_one

    @property
    def xp(self) -> Any:
        return self.rnn.xp

    def parameters(self) -> dict[str, Any]:
        params = {f"rnn.{k}": v for k, v in self.rnn.parameters().items()}
        params.update({f"head.{k}": v for k, v in self.head.params.items()})
        if self.embedding is not None:
            params.update({f"embedding.{k}": v for k, v in self.embedding.params.items()})
        return params

    def set_parameters(self, params: dict[str, Any]) -> None:
        """Replace every parameter (e.g. with an optimizer's result); names as :meth:`parameters` gives them."""
        current = self.parameters()
        if set(params) != set(current):
            msg = f"params must hold exactly {sorted(current)}; got {sorted(params)}"
            raise ValueError(msg)
        for name, value in params.items():  # every entry checked before any is replaced
            old = current[name]
            if type(value) is not type(old) or tuple(value.shape) != tuple(old.shape) or value.dtype != old.dtype:
                msg = (
                    f"params[{name!r}] must be a {type(old).__name__} of shape {tuple(old.shape)} and dtype "
                    f"{old.dtype}; got {type(value).__name__} {tuple(getattr(value, 'shape', ()))} "
                    f"{getattr(value, 'dtype', None)}"
                )
                raise TypeError(msg) if type(value) is not type(old) or value.dtype != old.dtype else ValueError(msg)
        for name, value in params.items():
            owner, key = name.split(".", 1)
            if owner == "rnn":
                self.rnn.set_parameter(key, value)
            elif owner == "head":
                self.head.params[key] = value
            else:
                assert self.embedding is not None
                self.embedding.params[key] = value

    def __call__(self, inputs: Any, h0: Any | None = None, lengths: Any | None = None) -> tuple[Any, Any]:
        """inputs: tokens (T, B) or features (T, B, I) (batch-first if the RNN is). Returns (logits, h_n)."""
        features = self.embedding(inputs) if self.embedding is not None else inputs
        out, h_n = self.rnn(features, h0, lengths)
        self._h_n_shape = h_n.shape
        if not self.many_to_one:
            return self.head(out), h_n
        return self.head(self._last_state(h_n)), h_n

    def backward(self, grad_logits: Any) -> None:
        """Fill :attr:`grads` (all parameters) from d loss / d logits."""
        xp = self.xp
        grad_features = self.head.backward(grad_logits)
        if self.many_to_one:
            directions = 2 if self.rnn.bidirectional else 1
            hidden = self.rnn.hidden_size
            stacked, batch = self._h_n_shape[0], self._h_n_shape[1]
            zeros = xp.zeros((stacked - directions, batch, hidden), dtype=grad_features.dtype,
                             device=device_of(grad_features))
            last = [grad_features[:, d * hidden : (d + 1) * hidden][None, ...] for d in range(directions)]
            grad_x, _ = self.rnn.backward(None, xp.concat([zeros, *last], axis=0))
        else:
            grad_x, _ = self.rnn.backward(grad_features)
        grads = {f"rnn.{k}": v for k, v in self.rnn.grads.items()}
        grads.update({f"head.{k}": v for k, v in self.head.grads.items()})
        if self.embedding is not None:
            self.embedding.backward(grad_x)
            grads.update({f"embedding.{k}": v for k, v in self.embedding.grads.items()})
        self.grads = grads

    def _last_state(self, h_n: Any) -> Any:
        directions = 2 if self.rnn.bidirectional else 1
        top = [h_n[h_n.shape[0] - directions + d, ...] for d in range(directions)]
        return top[0] if directions == 1 else self.xp.concat(top, axis=-1)


class SimpleRNN(PerThreadState):
    """Keras ``SimpleRNN``: x (batch, steps, features) -> the last state (batch, units), a many-to-one layer.

    ``return_sequences=True`` returns every step's state (batch, steps, units) instead. ``lengths`` (batch,) take
    each sequence's own last step, as Keras masking of right-padded sequences does. Put a :class:`Linear` after it
    for a prediction.

    Parameters
    ----------
    input_dim, units : int > 0
    activation : {"tanh", "relu"}
    return_sequences : bool
    device, dtype, seed
        As for :class:`rnn_xp.RNN`.
    init : {"torch", "keras"}
        "torch": U(-1/sqrt(units), 1/sqrt(units)) everywhere, as torch.nn.RNN. "keras": Keras's defaults, a
        glorot-uniform kernel, an orthogonal recurrent kernel and zero biases.

    Notes
    -----
    Keras's weights map onto torch's names as ``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``,
    ``bias_ih_l0 = bias``, ``bias_hh_l0 = 0``: :meth:`load_keras_weights` takes a real
    ``keras.layers.SimpleRNN``'s ``get_weights()``, and :meth:`keras_weights` gives the list its ``set_weights``
    takes (the two biases summed into one).

    Examples
    --------
    >>> import numpy as np
    >>> from rnn_xp.training import SimpleRNN
    >>> layer = SimpleRNN(32, 100, init="keras", seed=0)   # keras.layers.SimpleRNN(100) on (None, 250, 32)
    >>> layer(np.zeros((8, 250, 32), dtype=np.float32)).shape
    (8, 100)
    >>> [w.shape for w in layer.keras_weights()]            # what keras_layer.set_weights(...) takes
    [(32, 100), (100, 100), (100,)]
    >>> layer.load_keras_weights(layer.keras_weights())     # e.g. keras_layer.get_weights()
    """

    grads: dict[str, Any] = PerThread(dict)  # type: ignore[assignment]  # per thread, as the layers' (rnn_xp._threads)
    return_sequences: bool = Checked(checked_bool("return_sequences"))  # type: ignore[assignment]

    def __init__(self, input_dim: int, units: int, *, activation: str = "tanh", return_sequences: bool = False,
                 device: str = "cpu", dtype: str = "float32", seed: int | None = None, init: str = "torch") -> None:
        if init not in INITS:
            msg = f"init must be one of {INITS}; got {init!r}"
            raise ValueError(msg)
        self.rnn = RNN(input_dim, units, nonlinearity=activation, batch_first=True, device=device, dtype=dtype,
                       seed=seed)
        if init == "keras":
            self.rnn.load_state_dict(keras_init(input_dim, units, seed=seed, dtype=self.rnn.dtype))
        self.return_sequences = return_sequences

    def load_keras_weights(self, weights: Sequence[Any]) -> None:
        """Load ``keras.layers.SimpleRNN.get_weights()``: [kernel (input_dim, units), recurrent_kernel
        (units, units), bias (units,)], of this layer's dtype. Nothing is loaded unless all three are valid."""
        self.rnn.load_state_dict(from_keras(weights, self.rnn.input_size, self.rnn.hidden_size, dtype=self.rnn.dtype))

    def keras_weights(self) -> list[np.ndarray]:
        """[kernel (input_dim, units), recurrent_kernel (units, units), bias (units,)] as NumPy arrays, for
        ``keras.layers.SimpleRNN.set_weights``."""
        return to_keras(self.rnn.parameters())

    @property
    def xp(self) -> Any:
        return self.rnn.xp

    def parameters(self) -> dict[str, Any]:
        return {f"rnn.{k}": v for k, v in self.rnn.parameters().items()}

    def set_parameters(self, params: dict[str, Any]) -> None:
        """Replace every parameter; names as :meth:`parameters` gives them (``rnn.``-prefixed)."""
        expected = set(self.parameters())
        if set(params) != expected:
            msg = f"params must hold exactly {sorted(expected)}; got {sorted(params)}"
            raise ValueError(msg)
        for name, value in params.items():
            self.rnn.set_parameter(name.split(".", 1)[1], value)

    def __call__(self, x: Any, h0: Any | None = None, lengths: Any | None = None) -> Any:
        """x (batch, steps, input_dim) -> (batch, units), or (batch, steps, units) with return_sequences."""
        out, h_n = self.rnn(x, h0, lengths)
        return out if self.return_sequences else h_n[0, ...]

    def backward(self, grad_output: Any) -> Any:
        """grad of the output -> grad of x; fills :attr:`grads`."""
        if self.return_sequences:
            grad_x, _ = self.rnn.backward(grad_output)
        else:
            grad_x, _ = self.rnn.backward(None, grad_output[None, ...])
        self.grads = {f"rnn.{k}": v for k, v in self.rnn.grads.items()}
        return grad_x

