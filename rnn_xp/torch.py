"""``rnn_xp.torch.RNN``: a drop-in for ``torch.nn.RNN`` whose forward and backward run rnn_xp's loops.

The module has torch.nn.RNN's constructor, parameters (same names, order and initialisation, so ``state_dict`` moves
both ways and ``torch.manual_seed`` gives both the same weights) and ``forward(input, hx=None)``: time-major,
batch-first and unbatched tensors, and ``PackedSequence`` (returned packed). Inside, one
``torch.autograd.Function`` hands the tensors to :func:`rnn_xp.functional.rnn_forward` and its backward to
:func:`rnn_xp.functional.rnn_backward` (rnn_xp's BPTT):

- CPU tensors as NumPy arrays that share their memory (``tensor.numpy()``, ``torch.from_numpy``): the NumPy and
  compiled loops, no copy at the boundary;
- CUDA tensors as CuPy arrays through DLPack, on torch's current stream: rnn_xp's CUDA kernels (needs CuPy).

Differences from torch.nn.RNN: float32 and float64 only; ``dropout`` in [0, 1) (torch also takes 1); arguments are
checked strictly (``bias=1`` is a TypeError); a second-order gradient (``create_graph=True`` through the backward)
raises, as rnn_xp's backward is not itself differentiable; under ``torch.compile`` the layer runs eagerly (a graph
break). Dropout masks are drawn from a seed taken from torch's default generator, so ``torch.manual_seed`` makes a
training run repeatable (the masks differ from torch.nn.RNN's own).

Threads, on the CPU: rnn_xp's matrix products run on NumPy's BLAS threads, the model's other layers and the optimizer
on torch's OpenMP threads, and both pools keep their workers spinning for a while after each parallel region. Where
the process has few cores, one pool's spinning workers hold the cores that the other's next region waits for, which
can cost more than the step's arithmetic. ``OMP_WAIT_POLICY=PASSIVE`` in the environment before torch is imported
makes torch's workers sleep instead, which removes the stalls (torch.nn.RNN itself, with many small parallel regions
per step, is slower that way); ``bench/torch_module_step.py`` measures both (``bench/results/*-torch-module-step.md``).

Examples
--------
>>> import torch
>>> import rnn_xp.torch
>>> _ = torch.manual_seed(0)
>>> rnn = rnn_xp.torch.RNN(3, 4, num_layers=2, batch_first=True)
>>> reference = torch.nn.RNN(3, 4, num_layers=2, batch_first=True)
>>> reference.load_state_dict(rnn.state_dict())
<All keys matched successfully>
>>> x = torch.randn(2, 5, 3)
>>> out, h_n = rnn(x)
>>> out.shape, h_n.shape
(torch.Size([2, 5, 4]), torch.Size([2, 2, 4]))
>>> torch.allclose(out, reference(x)[0], atol=1e-6)
True
>>> out.sum().backward()
>>> rnn.weight_hh_l1.grad.shape
torch.Size([4, 4])
>>> packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3], batch_first=True)
>>> packed_out, h_n = rnn(packed)
>>> torch.allclose(packed_out.data, reference(packed)[0].data, atol=1e-6)
True
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import torch
except ImportError as error:
    msg = (
        "rnn_xp.torch needs PyTorch: pip install torch (on Linux add --index-url https://download.pytorch.org/whl/cpu "
        f"for the CPU build) ({error})"
    )
    raise ImportError(msg) from None
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnn_xp._checks import check_bool, check_dropout, check_nonlinearity, check_positive_int
from rnn_xp._device import import_cupy
from rnn_xp.functional import ForwardCache, rnn_backward, rnn_forward
from rnn_xp.layer import constructor_options
from rnn_xp.params import ParamLayout

__all__ = ["RNN"]

_DTYPES = (torch.float32, torch.float64)


class RNN(nn.Module):
    """A multi-layer Elman RNN, ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, as torch.nn.RNN, on
    rnn_xp's loops.

    Parameters
    ----------
    input_size, hidden_size : int > 0
    num_layers : int > 0
    nonlinearity : {"tanh", "relu"}
    bias : bool
    batch_first : bool
        ``input`` and ``output`` are (B, T, ·); ``hx`` and ``h_n`` never are.
    dropout : float in [0, 1)
        On the output of every layer but the last, in training mode.
    bidirectional : bool
    device, dtype :
        Where and how the parameters are made, as for any torch module; float32 or float64.

    Attributes
    ----------
    weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} : nn.Parameter
        (hidden_size, in_k), (hidden_size, hidden_size), (hidden_size,), (hidden_size,), with ``_reverse`` for the
        second direction; ``in_0 = input_size``, ``in_k = D * hidden_size``. Initialised U(-1/sqrt(H), 1/sqrt(H))
        in this order from torch's generator, as torch.nn.RNN does.

    Raises
    ------
    TypeError
        A size that is not an int, a flag that is not a bool, dropout not a number, a dtype other than float32 or
        float64.
    ValueError
        A size <= 0, an unknown nonlinearity, dropout outside [0, 1).
    """

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
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        layout = ParamLayout(
            input_size=check_positive_int(input_size, "input_size"),
            hidden_size=check_positive_int(hidden_size, "hidden_size"),
            num_layers=check_positive_int(num_layers, "num_layers"),
            num_directions=2 if check_bool(bidirectional, "bidirectional") else 1,
            bias=check_bool(bias, "bias"),
        )
        nonlinearity = check_nonlinearity(nonlinearity)
        batch_first = check_bool(batch_first, "batch_first")
        dropout = check_dropout(dropout)
        resolved = torch.get_default_dtype() if dtype is None else dtype
        if resolved not in _DTYPES:
            msg = f"dtype must be torch.float32 or torch.float64 (or None: the default dtype); got {resolved!r}"
            raise TypeError(msg)
        if dropout > 0 and layout.num_layers == 1:
            warnings.warn(  # torch.nn.RNN's warning: dropout acts between layers, so one layer never drops
                f"dropout acts on the output of every layer but the last, so it expects num_layers > 1; got "
                f"dropout={dropout} and num_layers=1", UserWarning, stacklevel=2)
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = layout.input_size, layout.hidden_size, layout.num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, layout.bias, batch_first
        self.dropout, self.bidirectional = dropout, layout.num_directions == 2
        self._layout = layout
        for name in layout.names():
            self.register_parameter(name, nn.Parameter(torch.empty(layout.shape(name), device=device,
                                                                   dtype=resolved)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter U(-1/sqrt(H), 1/sqrt(H)), drawn in registration order from torch's generator."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters per layer and direction, as torch.nn.RNN lists them."""
        per_direction = 4 if self.bias else 2
        names = self._layout.names()
        return [[getattr(self, name) for name in names[i : i + per_direction]]
                for i in range(0, len(names), per_direction)]

    def flatten_parameters(self) -> None:
        """Nothing to do (torch.nn.RNN packs its weights for cuDNN here); rnn_xp reads each parameter in place."""

    def extra_repr(self) -> str:
        return ", ".join(constructor_options(self))

    def forward(self, input: Any, hx: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        """Run the layer, as torch.nn.RNN.forward.

        Parameters
        ----------
        input : Tensor, shape (T, B, input_size) ((B, T, input_size) with ``batch_first``; (T, input_size)
            unbatched), or a ``PackedSequence`` of such rows
        hx : Tensor, shape (num_layers*D, B, hidden_size) ((num_layers*D, hidden_size) unbatched), optional
            Initial states in the caller's batch order (also for a PackedSequence); zeros when omitted.

        Returns
        -------
        output : Tensor, shape (T, B, D*hidden_size) (batch-first or unbatched like ``input``), forward direction
            first; a PackedSequence with ``input``'s batch sizes and indices when ``input`` is one (padding: zero).
        h_n : Tensor, shape like ``hx``: each sequence's state after its own last step, ``h_n[layer*D + d]``.

        Raises
        ------
        TypeError
            ``input`` not a Tensor or PackedSequence, ``hx`` not a Tensor; dtypes that differ from the parameters'
            or are not float32/float64.
        ValueError
            Shapes that do not match the layer, an empty sequence or batch, tensors on different devices or on a
            device other than CPU and CUDA.
        """
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, torch.Tensor):
            msg = f"input must be a torch.Tensor or a PackedSequence; got {type(input).__name__}"
            raise TypeError(msg)
        if input.dim() not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            msg = f"input must be 3-D {layout} or 2-D (T, input_size) unbatched; got shape {tuple(input.shape)}"
            raise ValueError(msg)
        unbatched = input.dim() == 2
        steps, batch = (input.shape[0], 1) if unbatched else (
            (input.shape[1], input.shape[0]) if self.batch_first else (input.shape[0], input.shape[1]))
        params = self._checked_params(input, steps, batch)
        self._check_hx(hx, input, batch, unbatched)
        out, h_n, _ = _run(input, hx, None, self._options(self.batch_first), params)
        return out, h_n

    def _forward_packed(self, packed: PackedSequence, hx: torch.Tensor | None) -> tuple[PackedSequence, torch.Tensor]:
        """A PackedSequence through rnn_xp's lengths: its rows are laid out padded, time-major, in the packed (sorted)
        batch order, whose lengths the batch sizes give on the host; hx and h_n are permuted as torch does."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        if data.dim() != 2:
            msg = f"input (a PackedSequence) must hold 2-D data (sum of lengths, input_size); got {tuple(data.shape)}"
            raise ValueError(msg)
        sizes = batch_sizes.numpy()
        steps, batch = len(sizes), int(sizes[0])
        params = self._checked_params(data, steps, batch)
        self._check_hx(hx, data, batch, unbatched=False)
        # Row of each packed element in the padded (T*B) layout: step t's elements are the first batch_sizes[t]
        # sequences of the sorted batch.
        step_of = np.repeat(np.arange(steps), sizes)
        rank = np.arange(step_of.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = torch.from_numpy(step_of * batch + rank).to(data.device)
        lengths = (sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)
        padded = data.new_zeros((steps * batch, data.shape[1])).index_copy(0, rows, data)
        if hx is not None and sorted_indices is not None:
            hx = hx.index_select(1, sorted_indices)
        out, h_n, _ = _run(padded.view(steps, batch, data.shape[1]), hx, lengths, self._options(False), params)
        if unsorted_indices is not None:
            h_n = h_n.index_select(1, unsorted_indices)
        out_data = out.reshape(steps * batch, out.shape[2]).index_select(0, rows)
        return PackedSequence(out_data, batch_sizes, sorted_indices, unsorted_indices), h_n

    def _options(self, batch_first: bool) -> _Options:
        dropout = self.dropout if self.training and self.num_layers > 1 else 0.0
        # The masks' seed comes from torch's default generator, so torch.manual_seed repeats a training run.
        seed = int(torch.randint(2**62, (), dtype=torch.int64).item()) if dropout > 0 else None
        return _Options(tuple(self._layout.names()), self.nonlinearity, batch_first, dropout, seed)

    def _checked_params(self, input: torch.Tensor, steps: int, batch: int) -> list[torch.Tensor]:
        """The parameters (looked up at each call, so torch.func.functional_call can swap them), after checking
        ``input``'s features, dtype and device against them."""
        params = [getattr(self, name) for name in self._layout.names()]
        dtype, device = params[0].dtype, params[0].device
        if dtype not in _DTYPES:
            msg = f"the parameters must be torch.float32 or torch.float64 for rnn_xp; got {dtype} (module.float())"
            raise TypeError(msg)
        if input.shape[-1] != self.input_size:
            msg = f"input must have input_size={self.input_size} as its last dimension; got shape {tuple(input.shape)}"
            raise ValueError(msg)
        if steps == 0 or batch == 0:
            msg = f"input must have at least one time step and one sequence; got shape {tuple(input.shape)}"
            raise ValueError(msg)
        if input.dtype != dtype:
            msg = f"input must have dtype {dtype} (the parameters' dtype); got {input.dtype}"
            raise TypeError(msg)
        if input.device != device:
            msg = f"input must be on {device} (the parameters' device); got {input.device}"
            raise ValueError(msg)
        if device.type not in _BRIDGES:
            msg = f"rnn_xp.torch.RNN runs on CPU and CUDA tensors; the parameters are on {device}"
            raise ValueError(msg)
        return params

    def _check_hx(self, hx: Any, input: torch.Tensor, batch: int, unbatched: bool) -> None:
        if hx is None:
            return
        if not isinstance(hx, torch.Tensor):
            msg = f"hx must be a torch.Tensor or None; got {type(hx).__name__}"
            raise TypeError(msg)
        stacked = self.num_layers * (2 if self.bidirectional else 1)
        expected = (stacked, self.hidden_size) if unbatched else (stacked, batch, self.hidden_size)
        meaning = "(num_layers*num_directions, hidden_size) for unbatched input" if unbatched else (
            "(num_layers*num_directions, batch, hidden_size)")
        if tuple(hx.shape) != expected:
            msg = f"hx must have shape {expected} {meaning}; got {tuple(hx.shape)}"
            raise ValueError(msg)
        if hx.dtype != input.dtype:
            msg = f"hx must have dtype {input.dtype} (the parameters' dtype); got {hx.dtype}"
            raise TypeError(msg)
        if hx.device != input.device:
            msg = f"hx must be on {input.device} (the parameters' device); got {hx.device}"
            raise ValueError(msg)


@dataclass(frozen=True)
class _Options:
    """What one call runs with besides its tensors."""

    names: tuple[str, ...]  # the parameters' names, in the order they are passed
    nonlinearity: str
    batch_first: bool
    dropout: float  # 0 outside training
    seed: int | None


# torch.compile cannot trace into NumPy, numba or CuPy: the layer runs eagerly there (a graph break), and the code
# around it is compiled.
@torch.compiler.disable
def _run(
    x: torch.Tensor, hx: torch.Tensor | None, lengths: np.ndarray | None, options: _Options,
    params: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, ForwardCache]:
    return _RNNFunction.apply(x, hx, lengths, options, *params)


class _RNNFunction(torch.autograd.Function):
    """rnn_forward as an autograd node whose backward is rnn_backward; the ForwardCache is a non-tensor output kept
    in ``ctx``."""

    @staticmethod
    def forward(
        x: torch.Tensor, hx: torch.Tensor | None, lengths: np.ndarray | None, options: _Options, *params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, ForwardCache]:
        bridge = _BRIDGES[x.device.type]
        with bridge.scope(x.device):
            out, h_n, cache = rnn_forward(
                bridge.array(x), {name: bridge.array(p) for name, p in zip(options.names, params, strict=True)},
                None if hx is None else bridge.array(hx), lengths=lengths, nonlinearity=options.nonlinearity,
                batch_first=options.batch_first, dropout=options.dropout, training=options.dropout > 0,
                seed=options.seed,
            )
            return bridge.tensor(out), bridge.tensor(h_n), cache

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        x, hx, _, _, *params = inputs
        ctx.cache, ctx.device, ctx.with_hx = output[2], x.device, hx is not None
        # The cache reads the parameters' memory; saving them lets torch's version counters refuse a backward after
        # an in-place edit (optimizer.step() before loss.backward()), as torch.nn.RNN does.
        ctx.save_for_backward(*params)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor | None, grad_h_n: torch.Tensor | None,
                 _grad_cache: Any) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():
            msg = ("rnn_xp.torch.RNN's backward (rnn_xp's BPTT) is not differentiable: create_graph=True and "
                   "higher-order gradients through it are not supported (torch.nn.RNN supports them on the CPU)")
            raise RuntimeError(msg)
        params = ctx.saved_tensors  # raises if a parameter changed in place since the forward
        if grad_out is None and grad_h_n is None:
            return (None,) * (4 + len(params))
        bridge, needs = _BRIDGES[ctx.device.type], ctx.needs_input_grad
        with bridge.scope(ctx.device):
            grad_x, grad_h0, grads = rnn_backward(
                ctx.cache, None if grad_out is None else bridge.array(grad_out),
                None if grad_h_n is None else bridge.array(grad_h_n), input_grad=needs[0],
            )
            return (
                None if grad_x is None else bridge.tensor(grad_x),
                bridge.tensor(grad_h0) if ctx.with_hx and needs[1] else None,
                None,
                None,
                *(bridge.tensor(g) if need else None for g, need in zip(grads.values(), needs[4:], strict=True)),
            )


class _Host:
    """CPU tensors as NumPy arrays and back, sharing memory."""

    @staticmethod
    def scope(device: torch.device) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    @staticmethod
    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().numpy()

    @staticmethod
    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array)


class _Cuda:
    """CUDA tensors as CuPy arrays and back through DLPack, sharing memory, inside :meth:`scope`: torch's current
    device and stream made CuPy's, so rnn_xp's kernels queue behind the work torch queued, and the DLPack exchanges
    (each of which synchronises the producer's stream with the consumer's current one) need no synchronisation."""

    @staticmethod
    @contextlib.contextmanager
    def scope(device: torch.device) -> Iterator[None]:
        cupy = import_cupy()
        index = torch.cuda.current_device() if device.index is None else device.index
        with torch.cuda.device(index):  # torch exports a CUDA tensor by DLPack only from its own current device
            stream = torch.cuda.current_stream(index)
            with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream, index):
                yield

    @staticmethod
    def array(tensor: torch.Tensor) -> Any:
        return import_cupy().from_dlpack(tensor.detach())

    @staticmethod
    def tensor(array: Any) -> torch.Tensor:
        return torch.from_dlpack(array)


_BRIDGES: dict[str, Any] = {"cpu": _Host, "cuda": _Cuda}
