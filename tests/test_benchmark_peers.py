"""The optional CPU peers (ONNX Runtime, JAX) compute what rnn_xp computes on the same weights and inputs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import rnn_xp
from rnn_xp.benchmark.cases import Case

CASES = [
    Case(7, 3, 5, 4),
    Case(7, 3, 5, 4, bidirectional=True),
    Case(6, 4, 5, 4, num_layers=2, bidirectional=True, with_lengths=True),
    Case(6, 4, 3, 5, with_lengths=True),
]


def _data(case: Case, dtype: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    weights = rnn_xp.RNN(
        case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional, dtype=dtype, seed=3
    ).state_dict()
    x = rng.standard_normal((case.seq_len, case.batch, case.input_size)).astype(dtype)
    grad_out = rng.standard_normal((case.seq_len, case.batch, case.directions * case.hidden)).astype(dtype)
    return weights, x, grad_out


def _ours(case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, ...]:
    rnn = rnn_xp.RNN(
        case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional,
        dtype=str(x.dtype), seed=0,
    )
    rnn.load_state_dict(weights)
    out, _ = rnn(x, lengths=case.lengths())
    grad_x, _ = rnn.backward(grad_out)
    return out, grad_x, rnn.grads["weight_hh_l0"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_onnxruntime_output_equals_rnn_xp(case: Case) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rnn_xp.benchmark.peers_onnx import OnnxRuntime

    weights, x, grad_out = _data(case, "float32")
    peer = OnnxRuntime("float32")
    assert peer.unavailable(case) is None
    peer.setup(case, weights, x, grad_out)
    out, _, _ = _ours(case, weights, x, grad_out)
    assert_close(peer.output(), out, rtol=1e-5, dtype=np.dtype("float32"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.label)
def test_jax_output_and_gradients_equal_rnn_xp(case: Case) -> None:
    pytest.importorskip("jax")
    from rnn_xp.benchmark.peers_jax import Jax

    weights, x, grad_out = _data(case, "float64")
    peer = Jax()
    assert peer.unavailable(case) is None
    peer.setup(case, weights, x, grad_out)
    out, grad_x, grad_w_hh = _ours(case, weights, x, grad_out)
    assert_close(peer.output(), out, rtol=1e-10, dtype=np.dtype("float64"))
    peer.train_step()
    grad_params, grad_input = peer.grads
    assert_close(np.asarray(grad_input), grad_x, rtol=1e-10)
    assert_close(np.asarray(grad_params["weight_hh_l0"]), grad_w_hh, rtol=1e-10)


def test_onnxruntime_is_forward_only_float32_only_in_the_sweep() -> None:
    from rnn_xp.benchmark.sweep import make_peer

    assert "float32 only" in str(make_peer("onnxruntime", "cpu", "float64").unavailable(CASES[0]))
    assert make_peer("onnxruntime", "cpu").trains is False
    assert make_peer("jax", "cpu").trains is True


def test_a_forward_only_peer_is_unsupported_on_training_rows() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from rnn_xp.benchmark.sweep import SweepConfig, run_sweep

    config = SweepConfig(devices=["cpu"], seq_lens=(3,), batches=(2,), hidden=(4,), input_size=3,
                         peers=("onnxruntime",), quick=True, max_seconds=0.01)
    rows = run_sweep(config, progress_bar=False)["rows"]
    by_direction = {row["direction"]: row["results"]["onnxruntime"] for row in rows}
    assert by_direction["fwd"]["status"] == "ok" and "median_s" in by_direction["fwd"]
    assert by_direction["train"] == {"status": "unsupported", "reason": "forward only"}
