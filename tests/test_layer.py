"""rnn_xp.RNN: torch's init, state dicts, devices, modes and backward through the layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import HAVE_GPU, assert_close, lengths_of_kind

import rnn_xp


def test_init_is_uniform_in_torch_bounds_and_seeded() -> None:
    rnn = rnn_xp.RNN(5, 16, num_layers=2, bidirectional=True, seed=3)
    bound = 1 / np.sqrt(16)
    state = rnn.state_dict()
    assert list(state) == [
        f"{kind}_l{layer}{suffix}" for layer in range(2) for suffix in ("", "_reverse")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    for value in state.values():
        assert value.dtype == np.float32
        assert np.all(np.abs(value) <= bound)
    assert state["weight_ih_l1"].shape == (16, 32)
    everything = np.concatenate([v.ravel() for v in state.values()])
    assert abs(float(np.std(everything)) - bound / np.sqrt(3)) < 0.02
    again = rnn_xp.RNN(5, 16, num_layers=2, bidirectional=True, seed=3).state_dict()
    other = rnn_xp.RNN(5, 16, num_layers=2, bidirectional=True, seed=4).state_dict()
    assert all(np.array_equal(state[k], again[k]) for k in state)
    assert not np.array_equal(state["weight_hh_l0"], other["weight_hh_l0"])


def test_loads_a_torch_state_dict_and_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.RNN(4, 8, num_layers=2, bidirectional=True, batch_first=True).double()
    rnn = rnn_xp.RNN(4, 8, num_layers=2, bidirectional=True, batch_first=True, dtype="float64")
    rnn.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    out, h_n = rnn(x)
    expected_out, expected_h_n = reference(torch.tensor(x))
    assert_close(out, expected_out, rtol=1e-12)
    assert_close(h_n, expected_h_n, rtol=1e-12)


def test_backward_fills_grads_like_torch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    reference = torch.nn.RNN(3, 6, num_layers=2, nonlinearity="relu").double()
    rnn = rnn_xp.RNN(3, 6, num_layers=2, nonlinearity="relu", dtype="float64")
    rnn.load_state_dict(reference.state_dict())
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 2, 6))
    out, _h_n = rnn(x, h0)
    grad_out = rng.standard_normal(out.shape)
    grad_x, grad_h0 = rnn.backward(grad_out)
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    expected_out, _ = reference(xt, h0t)
    (expected_out * torch.tensor(grad_out)).sum().backward()
    assert_close(grad_x, xt.grad, rtol=1e-12)
    assert_close(grad_h0, h0t.grad, rtol=1e-12)
    assert list(rnn.grads) == [name for name, _ in reference.named_parameters()]
    for name, parameter in reference.named_parameters():
        assert_close(rnn.grads[name], parameter.grad, rtol=1e-12)


def test_many_to_one_backward_from_h_n_only() -> None:
    rnn = rnn_xp.RNN(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    _, h_n = rnn(x)
    grad_x, _ = rnn.backward(None, np.ones_like(h_n))
    full_x, _ = rnn.backward(np.zeros((6, 2, 4)), np.ones_like(h_n))
    np.testing.assert_array_equal(grad_x, full_x)
    assert np.any(grad_x[0] != 0)


def test_state_dict_round_trip_and_copies() -> None:
    source = rnn_xp.RNN(3, 4, num_layers=2, seed=1)
    target = rnn_xp.RNN(3, 4, num_layers=2, seed=2)
    target.load_state_dict(source.state_dict())
    x = np.ones((2, 1, 3), dtype=np.float32)
    np.testing.assert_array_equal(target(x)[0], source(x)[0])
    state = target.state_dict()
    state["weight_hh_l0"][...] = 0
    assert np.any(target.state_dict()["weight_hh_l0"] != 0)


def test_train_eval_switch_dropout() -> None:
    rnn = rnn_xp.RNN(3, 5, num_layers=2, dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    assert rnn.training
    trained_a, _ = rnn(x)
    trained_b, _ = rnn(x)
    assert not np.array_equal(trained_a, trained_b)  # a fresh mask per call
    rnn.eval()
    assert not rnn.training
    np.testing.assert_array_equal(rnn(x)[0], rnn(x)[0])
    replay = rnn_xp.RNN(3, 5, num_layers=2, dropout=0.5, seed=0)
    np.testing.assert_array_equal(replay(x)[0], trained_a)  # the seed also fixes the masks


def test_to_cpu_keeps_parameters() -> None:
    rnn = rnn_xp.RNN(3, 4, seed=0)
    before = rnn.state_dict()
    assert rnn.to("cpu") is rnn
    assert rnn.device == "cpu"
    assert all(np.array_equal(before[k], v) for k, v in rnn.state_dict().items())


@pytest.mark.skipif(HAVE_GPU, reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_names_what_is_missing() -> None:
    with pytest.raises(rnn_xp.DeviceUnavailableError, match=r"CuPy|GPU"):
        rnn_xp.RNN(3, 4, device="cuda")
    rnn = rnn_xp.RNN(3, 4, seed=0)
    before = rnn.state_dict()
    with pytest.raises(rnn_xp.DeviceUnavailableError):
        rnn.to("cuda:0")
    assert rnn.device == "cpu"
    assert all(np.array_equal(before[k], v) for k, v in rnn.state_dict().items())


@pytest.mark.gpu
def test_cuda_layer_matches_cpu_layer() -> None:
    import cupy

    cpu = rnn_xp.RNN(5, 33, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    gpu = rnn_xp.RNN(5, 33, num_layers=2, bidirectional=True, dtype="float64", seed=0, device="cuda")
    x = np.random.default_rng(0).standard_normal((7, 3, 5))
    out_cpu, h_cpu = cpu(x, lengths=[7, 2, 5])
    out_gpu, h_gpu = gpu(cupy.asarray(x), lengths=[7, 2, 5])
    assert isinstance(out_gpu, cupy.ndarray)
    assert_close(out_gpu, out_cpu, rtol=1e-12)
    assert_close(h_gpu, h_cpu, rtol=1e-12)
    grad = np.random.default_rng(1).standard_normal(out_cpu.shape)
    cpu.backward(grad)
    gpu.backward(cupy.asarray(grad))
    for name in cpu.grads:
        assert_close(gpu.grads[name], cpu.grads[name], rtol=1e-10)


def test_repr_names_the_configuration() -> None:
    text = repr(rnn_xp.RNN(3, 4, num_layers=2, nonlinearity="relu", bidirectional=True))
    assert text == "RNN(3, 4, num_layers=2, nonlinearity='relu', bidirectional=True, device='cpu', dtype='float32')"


def test_dtype_none_means_float32_as_in_torch() -> None:
    rnn = rnn_xp.RNN(3, 4, dtype=None)
    assert rnn.dtype == "float32"
    assert all(v.dtype == np.float32 for v in rnn.parameters().values())


# Issue 12, item 10: torch tensors are pointed to rnn_xp.functional; lengths of any array kind are taken.
def test_a_torch_tensor_is_refused_with_the_way_to_use_it() -> None:
    torch = pytest.importorskip("torch")
    rnn = rnn_xp.RNN(3, 4)
    with pytest.raises(TypeError, match=r"x must be a NumPy array: a layer on device 'cpu' takes NumPy arrays \(use rnn_xp.functional for torch tensors.*got torch.Tensor"):
        rnn(torch.zeros(5, 2, 3))


LENGTH_KINDS = ["list", "tuple", "range", "numpy-int32", "numpy-uint8", "torch", "array_api_strict", "jax"]


@pytest.mark.parametrize("kind", LENGTH_KINDS)
def test_layer_takes_lengths_of_any_integer_array_kind(kind: str) -> None:
    rnn = rnn_xp.RNN(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((6, 3, 3))
    values = [2, 3, 4] if kind == "range" else [6, 1, 4]
    expected = rnn(x, lengths=np.asarray(values))
    got = rnn(x, lengths=lengths_of_kind(kind, values))
    for a, b in zip(got, expected, strict=True):
        assert isinstance(a, np.ndarray) and np.array_equal(a, b)


def test_lengths_that_are_not_integers_or_arrays_are_refused() -> None:
    rnn = rnn_xp.RNN(3, 4)
    x = np.zeros((6, 2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match=r"lengths must be a sequence of ints or an integer array .*got builtins.str"):
        rnn(x, lengths="12")
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"lengths must hold integers; got dtype float32"):
        rnn(x, lengths=torch.tensor([1.0, 2.0]))


# Issue 12, item 13: backward() replaces grads (torch accumulates into .grad until zero_grad()).
def test_backward_twice_replaces_grads_rather_than_accumulating() -> None:
    rnn = rnn_xp.RNN(3, 4, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    first, second = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    out, _ = rnn(first)
    rnn.backward(np.ones_like(out))
    from_first = {k: v.copy() for k, v in rnn.grads.items()}
    out, _ = rnn(second)
    rnn.backward(np.ones_like(out))
    from_second = {k: v.copy() for k, v in rnn.grads.items()}
    alone = rnn_xp.RNN(3, 4, dtype="float64", seed=0)
    out, _ = alone(second)
    alone.backward(np.ones_like(out))
    for name, value in alone.grads.items():
        assert np.array_equal(from_second[name], value)  # the second call's gradient alone, not a sum
        assert not np.allclose(from_second[name], from_first[name] + value)


def test_init_draws_without_float64_copies_and_keeps_the_seeded_numbers() -> None:
    """Issue 11 item 7: the init drew each parameter in float64, cast and copied it (3x the parameter bytes at peak);
    it now fills the parameters in chunks, with the same numbers as before (float64 draws rounded to the dtype)."""
    import tracemalloc

    rnn_xp.RNN(1, 4, seed=0)  # imports and first-call allocations out of the measurement
    tracemalloc.start()
    try:
        rnn = rnn_xp.RNN(1, 2048, seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    parameter_bytes = sum(v.nbytes for v in rnn.parameters().values())
    assert peak < 1.15 * parameter_bytes, f"peak {peak / parameter_bytes:.2f}x the parameter bytes"
    rng = np.random.default_rng(3)
    bound = 1.0 / np.sqrt(2048)
    for name, value in rnn.parameters().items():
        expected = rng.uniform(-bound, bound, size=value.shape).astype(np.float32)
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_edits_after_the_forward_do_not_change_the_layers_backward() -> None:
    """Issue 11 item 4 on the layer: x, h0, out edited in place and a parameter replaced by set_parameter after the
    forward; the backward still differentiates the forward that ran."""
    rng = np.random.default_rng(6)
    x, h0 = rng.standard_normal((6, 3, 2)), rng.standard_normal((1, 3, 5))
    grad_out = rng.standard_normal((6, 3, 5))

    def run(edit: bool) -> tuple[Any, ...]:
        rnn = rnn_xp.RNN(2, 5, dtype="float64", seed=1)
        xs, h0s = x.copy(), h0.copy()
        out, _ = rnn(xs, h0s)
        if edit:
            xs *= 2
            h0s += 1
            out *= 3
            rnn.set_parameter("weight_hh_l0", np.zeros((5, 5)))
        grad_x, grad_h0 = rnn.backward(grad_out)
        return grad_x, grad_h0, rnn.grads

    clean, edited = run(False), run(True)
    np.testing.assert_array_equal(clean[0], edited[0])
    np.testing.assert_array_equal(clean[1], edited[1])
    for name in clean[2]:
        np.testing.assert_array_equal(clean[2][name], edited[2][name], err_msg=name)


def test_threads_sharing_a_layer_each_differentiate_their_own_forward() -> None:
    """Issue 11 item 8: two threads interleave forward and backward on one layer in the order that mixed them up
    (A forward, B forward, A backward, B backward, A reads grads); each gets its own forward's gradients."""
    import threading

    rnn = rnn_xp.RNN(2, 4, dtype="float64", seed=2)
    rng = np.random.default_rng(7)
    inputs = {"A": rng.standard_normal((5, 3, 2)), "B": rng.standard_normal((5, 3, 2))}
    expected = {}
    for name, x in inputs.items():
        private = rnn_xp.RNN(2, 4, dtype="float64", seed=2)
        out, _ = private(x)
        grad_x, _ = private.backward(np.ones_like(out))
        expected[name] = (grad_x, private.grads)
    got: dict[str, Any] = {}
    turns = {name: threading.Event() for name in ("A forward", "B forward", "A backward", "B backward", "A reads")}
    order = ["A forward", "B forward", "A backward", "B backward", "A reads"]

    def step(name: str) -> None:
        turns[name].wait(timeout=30)

    def done(name: str) -> None:
        following = order.index(name) + 1
        if following < len(order):
            turns[order[following]].set()

    def worker(me: str) -> None:
        step(f"{me} forward")
        out, _ = rnn(inputs[me])
        done(f"{me} forward")
        step(f"{me} backward")
        grad_x, _ = rnn.backward(np.ones_like(out))
        done(f"{me} backward")
        if me == "A":
            step("A reads")
        got[me] = (grad_x, dict(rnn.grads))

    threads = [threading.Thread(target=worker, args=(me,)) for me in ("A", "B")]
    for thread in threads:
        thread.start()
    turns["A forward"].set()
    for thread in threads:
        thread.join(timeout=60)
    for me in ("A", "B"):
        assert_close(got[me][0], expected[me][0])
        for name, value in expected[me][1].items():
            assert_close(got[me][1][name], value)
    assert rnn.grads == {}, "the main thread ran no backward"


def test_a_layer_pickles_and_copies_without_its_per_thread_state() -> None:
    import copy
    import pickle

    rnn = rnn_xp.RNN(2, 3, seed=0)
    out, _ = rnn(np.ones((4, 1, 2), dtype=np.float32))
    rnn.backward(np.ones_like(out))
    for twin in (pickle.loads(pickle.dumps(rnn)), copy.deepcopy(rnn)):
        assert twin.grads == {}
        with pytest.raises(ValueError, match="needs a forward pass first"):
            twin.backward(np.ones_like(out))
        for name, value in rnn.parameters().items():
            np.testing.assert_array_equal(twin.parameters()[name], value)
