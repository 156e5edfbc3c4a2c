"""Independent references for the tests: torch.nn.RNN (with packing for lengths), and a plain per-sample NumPy
loop written the way tutorials write it (no shared code with rnn_xp)."""

from __future__ import annotations

from typing import Any

import numpy as np


def torch_rnn(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None,
    lengths: np.ndarray | None,
    grad_out: np.ndarray,
    grad_h_n: np.ndarray,
    *,
    num_layers: int,
    bidirectional: bool,
    nonlinearity: str,
    bias: bool,
    batch_first: bool,
) -> dict[str, Any]:
    """torch.nn.RNN's outputs and gradients for loss = <grad_out, out> + <grad_h_n, h_n>, as float64 NumPy."""
    import torch

    input_size = params["weight_ih_l0"].shape[1]
    hidden_size = params["weight_hh_l0"].shape[0]
    rnn = torch.nn.RNN(
        input_size,
        hidden_size,
        num_layers=num_layers,
        nonlinearity=nonlinearity,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
    ).double()
    rnn.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    if lengths is None:
        out, h_n = rnn(xt, h0t)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
        packed_out, h_n = rnn(packed, h0t)
        total = x.shape[1] if batch_first else x.shape[0]
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=batch_first, total_length=total)
    loss = (out * torch.tensor(grad_out)).sum() + (h_n * torch.tensor(grad_h_n)).sum()
    loss.backward()
    return {
        "out": out.detach().numpy(),
        "h_n": h_n.detach().numpy(),
        "grad_x": xt.grad.numpy(),
        "grad_h0": None if h0t is None else h0t.grad.numpy(),
        "grads": {name: p.grad.numpy() for name, p in rnn.named_parameters()},
    }


def loop_rnn(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None,
    lengths: np.ndarray | None,
    *,
    num_layers: int,
    bidirectional: bool,
    nonlinearity: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Forward only, one sample and one step at a time. x (T, B, I) -> out (T, B, D*H), h_n (L*D, B, H)."""
    num_steps, batch, _ = x.shape
    hidden = params["weight_hh_l0"].shape[0]
    directions = 2 if bidirectional else 1
    out = np.zeros((num_steps, batch, directions * hidden))
    h_n = np.zeros((num_layers * directions, batch, hidden))
    act = np.tanh if nonlinearity == "tanh" else (lambda z: np.maximum(z, 0.0))
    for b in range(batch):
        length = num_steps if lengths is None else int(lengths[b])
        layer_input = x[:length, b, :]
        for layer in range(num_layers):
            layer_out = np.zeros((length, directions * hidden))
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = params["weight_ih" + suffix], params["weight_hh" + suffix]
                b_ih = params.get("bias_ih" + suffix, np.zeros(hidden))
                b_hh = params.get("bias_hh" + suffix, np.zeros(hidden))
                h = np.zeros(hidden) if h0 is None else h0[layer * directions + d, b].copy()
                order = range(length) if d == 0 else range(length - 1, -1, -1)
                for t in order:
                    h = act(w_ih @ layer_input[t] + b_ih + w_hh @ h + b_hh)
                    layer_out[t, d * hidden : (d + 1) * hidden] = h
                h_n[layer * directions + d, b] = h
            layer_input = layer_out
        out[:length, b, :] = layer_input
    return out, h_n


def truncated_bptt_reference(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray,
    grad_out: np.ndarray,
    grad_h_n: np.ndarray,
    truncate: int,
) -> dict[str, np.ndarray]:
    """Brute-force truncated BPTT for one tanh layer, one direction, one sample, as the classic tutorial loops it.

    x (T, I), h0 (H,), grad_out (T, H), grad_h_n (H,). For every step t the gradient arriving there (grad_out[t],
    plus grad_h_n at the last step) is pushed back on its own through steps t, t-1, …, t-truncate; it reaches h0
    only if it has crossed at most ``truncate`` recurrent connections on arrival.
    """
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    b = params["bias_ih_l0"] + params["bias_hh_l0"]
    num_steps = x.shape[0]
    states = [h0]
    for t in range(num_steps):
        states.append(np.tanh(w_ih @ x[t] + w_hh @ states[-1] + b))
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    grad_x = np.zeros_like(x)
    grad_h0 = np.zeros_like(h0)
    for t in range(num_steps):
        delta = grad_out[t] + (grad_h_n if t == num_steps - 1 else 0.0)
        for s in range(t, max(0, t - truncate) - 1, -1):
            grad_z = delta * (1.0 - states[s + 1] ** 2)
            grads["weight_ih_l0"] += np.outer(grad_z, x[s])
            grads["weight_hh_l0"] += np.outer(grad_z, states[s])
            grads["bias_ih_l0"] += grad_z
            grads["bias_hh_l0"] += grad_z
            grad_x[s] += w_ih.T @ grad_z
            delta = w_hh.T @ grad_z
            if s == 0 and t + 1 <= truncate:
                grad_h0 += delta
    grads["grad_x"], grads["grad_h0"] = grad_x, grad_h0
    return grads
