"""The implementations a benchmark compares, each behind one interface, fed the same weights and inputs.

- ``rnn_xp``: the public layer on "cpu" (NumPy) or "cuda" (CuPy kernels);
- ``rnn_xp-generic``: the layer on CuPy with the kernels off (the generic Array-API loop);
- ``torch``: torch.nn.RNN on CPU, or with cuDNN on the GPU (TF32 off);
- ``numpy-loop``: a per-step NumPy loop as tutorials write it (one layer, one direction, tanh);
- ``onnxruntime`` and ``jax`` (CPU, optional: ``rnn-xp[peers]``): :mod:`rnn_xp.benchmark.peers_onnx`,
  :mod:`rnn_xp.benchmark.peers_jax`.

A peer that cannot run (not installed, no GPU, unsupported case) says why in :meth:`Peer.unavailable`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from rnn_xp.benchmark.cases import Case

# The CPU build of the torch release the benchmarks pin: a plain `pip install torch` pulls the CUDA build (GBs).
TORCH_CPU_INSTALL = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


class Peer:
    """One implementation under test. Call :meth:`setup` once per case, then the timed methods."""

    name = "peer"
    device = "cpu"
    trains = True  # whether train_step exists (ONNX Runtime's peer is forward only)

    def unavailable(self, case: Case) -> str | None:
        """Why this peer cannot run ``case`` here, or None."""
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self) -> None:
        raise NotImplementedError

    def train_step(self) -> None:
        """Forward, then backward into inputs and all parameters."""
        raise NotImplementedError

    def output(self) -> np.ndarray:
        """The forward output on the host, for the correctness check."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    def timer(self) -> Any:
        """A per-call timer for :func:`rnn_xp.benchmark.timing.measure`, or None for the host clock."""
        return None


class RnnXp(Peer):
    """rnn_xp.RNN; ``generic=True`` forces the generic Array-API loop on CuPy (kernels off)."""

    def __init__(self, device: str = "cpu", *, generic: bool = False) -> None:
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.generic = generic
        self.name = "rnn_xp-generic" if generic else "rnn_xp"

    def unavailable(self, case: Case) -> str | None:
        if self.device == "cuda":
            return _gpu_missing()
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        import rnn_xp

        self.rnn = rnn_xp.RNN(
            case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional,
            device=self.device, dtype=str(x.dtype), seed=0, loop="generic" if self.generic else "auto",
        ).eval()
        self.rnn.load_state_dict(weights)
        xp = self.rnn.xp
        self.x, self.grad_out = xp.asarray(x), xp.asarray(grad_out)
        self.lengths = case.lengths()

    def forward(self) -> None:
        self._out, _ = self.rnn(self.x, lengths=self.lengths)

    def train_step(self) -> None:
        self.rnn(self.x, lengths=self.lengths)
        self.rnn.backward(self.grad_out)

    def output(self) -> np.ndarray:
        from rnn_xp._arrays import to_numpy

        self.forward()
        return to_numpy(self._out)

    def synchronize(self) -> None:
        if self.device == "cuda":
            import cupy

            cupy.cuda.Device().synchronize()

    def timer(self) -> Any:
        return cuda_event_timer if self.device == "cuda" else None


class Torch(Peer):
    """torch.nn.RNN on the CPU, or on the GPU with cuDNN (TF32 off, so fp32 math is fp32)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.name = "torch-cudnn" if self.device == "cuda" else "torch"

    def unavailable(self, case: Case) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return f"torch is not installed; add it with {TORCH_CPU_INSTALL}"
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "torch has no CUDA device"
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        self.torch = torch
        self.rnn = torch.nn.RNN(
            case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional
        ).to(device=self.device, dtype=dtype)
        self.rnn.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
        self.x = torch.from_numpy(x).to(self.device)
        self.x_grad = self.x.clone().requires_grad_(True)
        self.grad_out = torch.from_numpy(grad_out).to(self.device)
        lengths = case.lengths()
        self.lengths = None if lengths is None else torch.tensor(lengths, dtype=torch.int64)

    def _run(self, x: Any) -> Any:
        """torch.nn.RNN on ``x``; with lengths, through a packed sequence and back to zero-padded outputs."""
        if self.lengths is None:
            return self.rnn(x)[0]
        utils = self.torch.nn.utils.rnn
        packed = utils.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        return utils.pad_packed_sequence(self.rnn(packed)[0], total_length=x.shape[0])[0]

    def forward(self) -> None:
        with self.torch.no_grad():
            self._out = self._run(self.x)

    def train_step(self) -> None:
        self.rnn.zero_grad(set_to_none=True)
        self.x_grad.grad = None
        out = self._run(self.x_grad)
        out.backward(self.grad_out)

    def output(self) -> np.ndarray:
        self.forward()
        return self._out.cpu().numpy()

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def timer(self) -> Any:
        return cuda_event_timer if self.device == "cuda" else None


class NumpyLoop(Peer):
    """The per-step loop of the NumPy tutorials: projection, recurrence and tanh each step, then np.stack."""

    name = "numpy-loop"

    def unavailable(self, case: Case) -> str | None:
        if case.num_layers != 1 or case.bidirectional or case.with_lengths:
            return "the tutorial loop covers one layer, one direction, full lengths"
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        self.w_ih, self.w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
        self.b_ih, self.b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
        self.x, self.grad_out = x, grad_out

    def forward(self) -> None:
        h = np.zeros((self.x.shape[1], self.w_hh.shape[0]), dtype=self.x.dtype)
        states = []
        for t in range(self.x.shape[0]):
            h = np.tanh(self.x[t] @ self.w_ih.T + self.b_ih + h @ self.w_hh.T + self.b_hh)
            states.append(h)
        self._states = states
        self._out = np.stack(states)

    def train_step(self) -> None:
        self.forward()
        grad_w_ih, grad_w_hh = np.zeros_like(self.w_ih), np.zeros_like(self.w_hh)
        grad_b = np.zeros_like(self.b_ih)
        grad_x = np.zeros_like(self.x)
        carry = np.zeros_like(self._states[0])
        for t in reversed(range(self.x.shape[0])):
            grad_z = (self.grad_out[t] + carry) * (1 - self._states[t] ** 2)
            previous = self._states[t - 1] if t > 0 else np.zeros_like(carry)
            grad_w_ih += grad_z.T @ self.x[t]
            grad_w_hh += grad_z.T @ previous
            grad_b += grad_z.sum(axis=0)
            grad_x[t] = grad_z @ self.w_ih
            carry = grad_z @ self.w_hh

    def output(self) -> np.ndarray:
        self.forward()
        return self._out


def cuda_event_timer(call: Any, synchronize: Any) -> float:
    """Seconds of one call between two CUDA events on the current (legacy default) stream."""
    import cupy

    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    call()
    end.record()
    end.synchronize()
    return float(cupy.cuda.get_elapsed_time(start, end)) / 1e3


def _gpu_missing() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as error:  # CuPy raises CUDARuntimeError without a driver
        return f"no CUDA device ({type(error).__name__})"
    return None
