"""``rnn_xp.RNN``: a stacked Elman RNN layer with torch.nn.RNN's parameters, shapes and numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from rnn_xp._arrays import aligned_empty, from_numpy, namespace_of, to_numpy
from rnn_xp._checks import (
    Checked,
    check_bool,
    check_call,
    check_dropout,
    check_dtype_name,
    check_loop,
    check_nonlinearity,
    check_plain_array,
    check_positive_int,
    check_seed,
    checked_bool,
)
from rnn_xp._device import namespace_for, parse_device
from rnn_xp._threads import PerThread, PerThreadState
from rnn_xp.functional import ForwardCache, rnn_backward, run_forward
from rnn_xp.params import ParamLayout, init_params


class RNN(PerThreadState):
    """A multi-layer Elman RNN, ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, as torch.nn.RNN.

    Parameters
    ----------
    input_size, hidden_size : int > 0
    num_layers : int > 0
    nonlinearity : {"tanh", "relu"}
    bias : bool
        Keep the two biases ``bias_ih``/``bias_hh`` (torch keeps both).
    batch_first : bool
        x and output are (B, T, ·); h0/h_n never are.
    dropout : float in [0, 1)
        On the output of every layer but the last, in training mode only.
    bidirectional : bool
    device : {"cpu", "cuda", "cuda:N"}
        "cpu" holds NumPy arrays; "cuda" CuPy arrays on that GPU (CuPy is imported only then).
    dtype : {"float32", "float64"}
    seed : int, optional
        Seeds the initialisation (U(-1/sqrt(H), 1/sqrt(H)), torch's) and the dropout masks.
    loop : {"auto", "generic", "numpy", "numpy_transposed", "compiled"}
        The time loop (see :func:`rnn_xp.functional.rnn_forward`): "generic" runs the Array-API loop even where
        a fast path exists (the benchmark's generic peer); the others force one of the CPU loops.

    Attributes
    ----------
    grads : dict of torch-named arrays
        The parameter gradients of the last :meth:`backward`, which *replaces* them (torch instead accumulates into
        ``.grad`` until ``zero_grad()``).

    Notes
    -----
    Threads: one layer may serve several threads. The parameters are shared; the forward cache and :attr:`grads`
    are per thread, so each thread's ``backward`` differentiates that thread's last forward and fills that thread's
    ``grads``. Updating the parameters while another thread runs is for the caller to order.

    Examples
    --------
    >>> import numpy as np, rnn_xp
    >>> rnn = rnn_xp.RNN(3, 4, num_layers=2, seed=0)
    >>> out, h_n = rnn(np.zeros((5, 2, 3), dtype=np.float32))
    >>> out.shape, h_n.shape
    ((5, 2, 4), (2, 2, 4))
    >>> grad_x, grad_h0 = rnn.backward(np.ones_like(out))
    >>> rnn.grads["weight_hh_l1"].shape
    (4, 4)
    """

    grads: dict[str, Any] = PerThread(dict)  # type: ignore[assignment]  # this thread's last backward
    _cache: ForwardCache | None = PerThread(lambda: None)  # type: ignore[assignment]  # this thread's last forward
    # Checked on every assignment, in __init__ and after, with the constructor's errors.
    nonlinearity: str = Checked(check_nonlinearity)  # type: ignore[assignment]
    batch_first: bool = Checked(checked_bool("batch_first"))  # type: ignore[assignment]
    dropout: float = Checked(check_dropout)  # type: ignore[assignment]
    loop: str = Checked(check_loop)  # type: ignore[assignment]
    training: bool = Checked(checked_bool("training"))  # type: ignore[assignment]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: str = "cpu",
        dtype: str = "float32",
        seed: int | None = None,
        loop: str = "auto",
    ) -> None:
        self.layout = ParamLayout(
            input_size=check_positive_int(input_size, "input_size"),
            hidden_size=check_positive_int(hidden_size, "hidden_size"),
            num_layers=check_positive_int(num_layers, "num_layers"),
            num_directions=2 if check_bool(bidirectional, "bidirectional") else 1,
            bias=check_bool(bias, "bias"),
        )
        self.nonlinearity = nonlinearity
        self.batch_first = batch_first
        self.dropout = dropout
        self._dtype = check_dtype_name(dtype)
        self.loop = loop
        seed = check_seed(seed)
        self._device = parse_device(device)
        self._xp = namespace_for(self._device)
        self._dropout_rng = np.random.default_rng(None if seed is None else seed + 1)
        self.training = True
        host = init_params(self.layout, seed=seed, dtype=self.dtype)
        self._params: dict[str, Any] = {name: from_numpy(v, self._device, owned=True) for name, v in host.items()}

    # -- configuration -------------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.layout.input_size

    @property
    def hidden_size(self) -> int:
        return self.layout.hidden_size

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers

    @property
    def bidirectional(self) -> bool:
        return self.layout.num_directions == 2

    @property
    def bias(self) -> bool:
        return self.layout.bias

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def dtype(self) -> str:
        """"float32" or "float64", the parameters' dtype (fixed: build a new layer for another)."""
        return self._dtype

    @dtype.setter
    def dtype(self, value: Any) -> None:
        if check_dtype_name(value) != self._dtype:
            msg = (f"dtype cannot change after construction (the parameters are {self._dtype}); got {value!r}: "
                   "build a new layer and load_state_dict converted arrays")
            raise ValueError(msg)

    @property
    def xp(self) -> Any:
        """The array-api-compat namespace of this layer's arrays."""
        return self._xp

    def __repr__(self) -> str:
        options = [*constructor_options(self), f"device={self.device!r}, dtype={self.dtype!r}"]
        return f"RNN({', '.join(options)})"

    def train(self, mode: bool = True) -> RNN:
        self.training = check_bool(mode, "mode")
        return self

    def eval(self) -> RNN:
        return self.train(False)

    def to(self, device: str) -> RNN:
        """Move parameters and gradients to ``device`` ("cpu", "cuda", "cuda:N"); drops the forward cache."""
        target = parse_device(device)
        xp = namespace_for(target)
        params = {name: _on_device(to_numpy(v), target) for name, v in self._params.items()}
        grads = {name: _on_device(to_numpy(v), target) for name, v in self.grads.items()}
        self.forget_every_thread()  # other threads' caches and gradients live on the old device
        self._device, self._xp, self._params, self.grads = target, xp, params, grads
        return self

    def dropout_rng_state(self) -> dict[str, Any]:
        """The state of the generator that draws dropout masks (for checkpoints)."""
        return dict(self._dropout_rng.bit_generator.state)

    def set_dropout_rng_state(self, state: dict[str, Any]) -> None:
        self._dropout_rng.bit_generator.state = state

    # -- parameters ----------------------------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """The live parameter arrays by torch name, in a new dict.

        The arrays are the layer's own, not copies: an in-place edit (``p -= lr * g``, as the optimizers of
        :mod:`rnn_xp.training` do) changes the layer. Make such edits after :meth:`backward`: a backward
        differentiates the weights as they are when it runs, so an in-place edit between a forward and its backward
        makes it differentiate a network that never ran (torch raises there; rnn_xp cannot see in-place edits of
        NumPy/CuPy arrays). Replacing a parameter with :meth:`set_parameter`, and in-place edits of ``x``, ``h0`` or
        the returned ``out``, are safe at any time: the forward keeps what its backward needs.
        """
        return dict(self._params)

    def state_dict(self) -> dict[str, Any]:
        """Copies of the parameters, keyed by torch's names, as arrays of this layer's device."""
        return {name: self._xp.asarray(value, copy=True) for name, value in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load torch-named parameters from NumPy, CuPy or torch arrays (e.g. ``torch.nn.RNN.state_dict()``).

        Raises
        ------
        TypeError
            Not a mapping, an entry that is not an array, or an entry whose dtype differs from the layer's.
        ValueError
            Missing, extra or mis-shaped entries. Nothing is loaded unless every entry is valid.
        """
        if not isinstance(state_dict, Mapping):
            msg = f"state_dict must be a mapping of torch-named arrays; got {type(state_dict).__name__}"
            raise TypeError(msg)
        names = self.layout.names()
        missing = [n for n in names if n not in state_dict]
        extra = sorted(str(n) for n in state_dict if n not in set(names))
        if missing or extra:
            msg = f"state_dict must hold exactly {names}; missing {missing}, unexpected {extra}"
            raise ValueError(msg)
        loaded = {}
        for name in names:
            value = state_dict[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                msg = f"state_dict[{name!r}] must be an array; got {type(value).__name__}"
                raise TypeError(msg)
            host = _host_copy(value, f"state_dict[{name!r}]")
            if host.shape != self.layout.shape(name):
                msg = f"state_dict[{name!r}] must have shape {self.layout.shape(name)}; got {tuple(host.shape)}"
                raise ValueError(msg)
            if host.dtype.name != self.dtype:
                msg = (
                    f"state_dict[{name!r}] must have dtype {self.dtype} (the layer's dtype); got {host.dtype}. "
                    "Nothing is cast silently: convert it, or build the layer with the matching dtype"
                )
                raise TypeError(msg)
            loaded[name] = _on_device(host, self._device)
        self._params, self._cache = loaded, None

    def set_parameter(self, name: str, value: Any) -> None:
        """Replace one parameter by an array of this layer's namespace, device, dtype and shape."""
        if not isinstance(name, str):
            msg = f"name must be a string, one of {list(self._params)}; got {type(name).__name__} {name!r}"
            raise TypeError(msg)
        if name not in self._params:
            msg = f"name must be one of {list(self._params)}; got {name!r}"
            raise ValueError(msg)
        old = self._params[name]
        if namespace_of(value, argname="value") is not self._xp:
            msg = f"value must be an array of this layer's namespace ({self.device}); got {type(value).__name__}"
            raise TypeError(msg)
        if tuple(value.shape) != tuple(old.shape):
            msg = f"value for {name!r} must have shape {tuple(old.shape)}; got {tuple(value.shape)}"
            raise ValueError(msg)
        if value.dtype != old.dtype:
            msg = f"value for {name!r} must have dtype {old.dtype}; got {value.dtype}"
            raise TypeError(msg)
        self._params[name] = value

    # -- compute -------------------------------------------------------------------------------------------
    def __call__(self, x: Any, h0: Any | None = None, lengths: Any | None = None) -> tuple[Any, Any]:
        """Forward pass.

        Parameters
        ----------
        x : array of this layer's device, shape (T, B, input_size) ((B, T, ·) if batch_first, (T, ·) unbatched)
            NumPy on "cpu", CuPy on "cuda"; :func:`rnn_xp.functional.rnn_forward` takes torch, JAX and other arrays.
        h0 : array, shape (num_layers*D, B, hidden_size), optional
        lengths : sequence of int, or integer array of any namespace and device, shape (B,), optional
            Each sequence's length in [1, T].

        Returns
        -------
        out : shape (T, B, D*hidden_size) (batch-first/unbatched like x)
        h_n : shape (num_layers*D, B, hidden_size)
        """
        check_plain_array(x, "x")
        if h0 is not None:
            check_plain_array(h0, "h0")
        xp = namespace_of(x, h0, argname="x and h0")
        if xp is not self._xp:
            kind = "NumPy" if self._device.kind == "cpu" else "CuPy"
            msg = (
                f"x must be a {kind} array: a layer on device {self.device!r} takes {kind} arrays "
                f"(use rnn_xp.functional for torch tensors and other array types); "
                f"got {type(x).__module__}.{type(x).__name__}"
            )
            raise TypeError(msg)
        first = self._params[self.layout.names()[0]]
        call = check_call(
            xp, x, h0, lengths, self.layout, batch_first=self.batch_first, dtype=first.dtype,
            device=device_of(first),
        )
        dropout = self.dropout if self.training else 0.0
        seed = int(self._dropout_rng.integers(2**63)) if dropout > 0.0 else None
        out, h_n, cache = run_forward(  # a dict of its own: set_parameter after the forward cannot reach the cache
            xp, call, dict(self._params), self.layout, self.nonlinearity, dropout, seed, self.loop
        )
        self._cache = cache
        return out, h_n

    forward = __call__

    def backward(
        self, grad_out: Any | None, grad_h_n: Any | None = None, *, bptt_truncate: int | None = None
    ) -> tuple[Any, Any]:
        """Back-propagation through time through the last forward; fills :attr:`grads`.

        Parameters
        ----------
        grad_out : array shaped like the last ``out``, or None (only ``h_n`` is used)
        grad_h_n : array shaped like the last ``h_n``, optional
        bptt_truncate : int >= 0, optional — see :func:`rnn_xp.functional.rnn_backward`

        Returns
        -------
        grad_x : shaped like x
        grad_h0 : shaped like h0 (also when h0 was omitted)

        Notes
        -----
        Each call *replaces* :attr:`grads` with the gradients of this backward alone; unlike torch, which adds into
        ``.grad`` until ``zero_grad()``, nothing accumulates. To accumulate (e.g. over micro-batches), add the
        dicts yourself.
        """
        if self._cache is None:
            msg = "backward() needs a forward pass first: call rnn(x) before rnn.backward(grad_out)"
            raise ValueError(msg)
        grad_x, grad_h0, grads = rnn_backward(self._cache, grad_out, grad_h_n, bptt_truncate=bptt_truncate)
        self.grads = grads
        return grad_x, grad_h0


def constructor_options(rnn: Any) -> list[str]:
    """The sizes and the options that differ from torch.nn.RNN's defaults, as they are written in a constructor call
    (for the reprs of :class:`RNN` and :class:`rnn_xp.torch.RNN`)."""
    options = [f"{rnn.input_size}, {rnn.hidden_size}"]
    if rnn.num_layers != 1:
        options.append(f"num_layers={rnn.num_layers}")
    if rnn.nonlinearity != "tanh":
        options.append(f"nonlinearity={rnn.nonlinearity!r}")
    if not rnn.bias:
        options.append("bias=False")
    if rnn.batch_first:
        options.append("batch_first=True")
    if rnn.dropout:
        options.append(f"dropout={rnn.dropout}")
    if rnn.bidirectional:
        options.append("bidirectional=True")
    return options


def _on_device(host: np.ndarray, device: Any) -> Any:
    """A copy of ``host`` on ``device``; on the CPU C-contiguous and 64-byte aligned, as :func:`init_params` makes
    them (:func:`rnn_xp._arrays.aligned_empty`)."""
    if device.kind == "cpu":
        copy = aligned_empty(host.shape, host.dtype)
        copy[...] = host
        return copy
    return from_numpy(host, device)


def _host_copy(value: Any, argname: str) -> Any:
    """A NumPy copy of ``value``, or an error naming ``argname`` (a torch meta tensor has no data; bfloat16 and
    other dtypes without a NumPy equivalent cannot be read)."""
    if getattr(value, "is_meta", False):
        msg = f"{argname} is a meta tensor (shape only, no data); load real values"
        raise ValueError(msg)
    try:
        return to_numpy(value)
    except (TypeError, RuntimeError) as error:
        msg = f"{argname} has dtype {value.dtype}, which has no NumPy equivalent; use float32 or float64 ({error})"
        raise TypeError(msg) from None
