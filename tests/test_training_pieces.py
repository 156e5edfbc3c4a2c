"""Training pieces against torch in float64: Linear, Embedding, losses, optimizers, clipping, sequence models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import assert_close

import rnn_xp
from rnn_xp.training import (
    SGD,
    Adagrad,
    Adam,
    Embedding,
    Linear,
    SequenceModel,
    SimpleRNN,
    clip_grad_norm,
    mse,
    mse_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)

RTOL = 1e-12


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def test_linear_matches_torch(torch: Any) -> None:
    layer = Linear(5, 3, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 5))
    grad_y = np.random.default_rng(1).standard_normal((4, 2, 3))
    y = layer(x)
    grad_x = layer.backward(grad_y)
    reference = torch.nn.Linear(5, 3).double()
    reference.load_state_dict({k: torch.tensor(v) for k, v in layer.params.items()})
    xt = torch.tensor(x, requires_grad=True)
    yt = reference(xt)
    yt.backward(torch.tensor(grad_y))
    assert_close(y, yt.detach(), rtol=RTOL)
    assert_close(grad_x, xt.grad, rtol=RTOL)
    assert_close(layer.grads["weight"], reference.weight.grad, rtol=RTOL)
    assert_close(layer.grads["bias"], reference.bias.grad, rtol=RTOL)


def test_embedding_matches_torch_with_repeated_tokens(torch: Any) -> None:
    layer = Embedding(7, 4, dtype="float64", seed=0)
    tokens = np.array([[1, 3, 1], [6, 1, 0]])
    grad = np.random.default_rng(0).standard_normal((2, 3, 4))
    out = layer(tokens)
    layer.backward(grad)
    reference = torch.nn.Embedding(7, 4).double()
    reference.weight.data = torch.tensor(layer.params["weight"])
    expected = reference(torch.tensor(tokens))
    expected.backward(torch.tensor(grad))
    assert_close(out, expected.detach(), rtol=RTOL)
    assert_close(layer.grads["weight"], reference.weight.grad, rtol=RTOL)


def test_cross_entropy_with_mask_matches_torch_ignore_index(torch: Any) -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((10, 6)) * 3
    targets = rng.integers(0, 6, 10)
    mask = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    loss, cache = softmax_cross_entropy(logits, targets, mask)
    grad = softmax_cross_entropy_backward(cache)
    lt = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(lt, torch.tensor(np.where(mask, targets, -100)), ignore_index=-100)
    expected.backward()
    assert_close(loss, expected.detach(), rtol=RTOL)
    assert_close(grad, lt.grad, rtol=RTOL)


def test_mse_matches_torch(torch: Any) -> None:
    rng = np.random.default_rng(1)
    prediction, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss, cache = mse(prediction, target)
    pt = torch.tensor(prediction, requires_grad=True)
    expected = torch.nn.functional.mse_loss(pt, torch.tensor(target))
    expected.backward()
    assert_close(loss, expected.detach(), rtol=RTOL)
    assert_close(mse_backward(cache), pt.grad, rtol=RTOL)


OPTIMIZERS = [
    ("sgd", dict(lr=0.1), dict(lr=0.1)),
    ("sgd-momentum-decay", dict(lr=0.05, momentum=0.9, weight_decay=0.01),
     dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgd-nesterov", dict(lr=0.05, momentum=0.8, nesterov=True), dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd-dampening", dict(lr=0.05, momentum=0.8, dampening=0.3), dict(lr=0.05, momentum=0.8, dampening=0.3)),
    ("adam", dict(lr=0.01), dict(lr=0.01)),
    ("adam-decay", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adagrad", dict(lr=0.1), dict(lr=0.1)),
    ("adagrad-decay", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1),
     dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1)),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizer_steps_match_torch(torch: Any, name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    kind = name.split("-")[0]
    optimizer = {"sgd": SGD, "adam": Adam, "adagrad": Adagrad}[kind](**ours)
    reference = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[kind](
        list(tensors.values()), **theirs
    )
    for _ in range(6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        params = optimizer.step(params, grads)
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[key])
        reference.step()
    for key in params:
        assert_close(params[key], tensors[key].detach(), rtol=1e-13)


def test_clip_grad_norm_matches_torch(torch: Any) -> None:
    rng = np.random.default_rng(2)
    grads = {"a": rng.standard_normal((3, 4)) * 5, "b": rng.standard_normal(5)}
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for tensor, grad in zip(tensors, grads.values(), strict=True):
        tensor.grad = torch.tensor(grad)
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, 2.0)
    clipped, norm = clip_grad_norm(grads, 2.0)
    assert norm == pytest.approx(float(expected_norm), rel=1e-12)
    for tensor, grad in zip(tensors, clipped.values(), strict=True):
        assert_close(grad, tensor.grad, rtol=1e-12)
    unchanged, _ = clip_grad_norm(grads, 1e6)
    assert all(np.array_equal(unchanged[k], grads[k]) for k in grads)


def test_many_to_many_model_matches_torch(torch: Any) -> None:
    model = SequenceModel(
        rnn_xp.RNN(4, 6, num_layers=2, dtype="float64", seed=0),
        Linear(6, 5, dtype="float64", seed=1),
        embedding=Embedding(5, 4, dtype="float64", seed=2),
    )
    tokens = np.random.default_rng(0).integers(0, 5, (7, 3))
    targets = np.random.default_rng(1).integers(0, 5, (7, 3))
    logits, _ = model(tokens)
    loss, cache = softmax_cross_entropy(np.reshape(logits, (21, 5)), targets.reshape(21))
    model.backward(np.reshape(softmax_cross_entropy_backward(cache), (7, 3, 5)))

    embedding, rnn, head = torch.nn.Embedding(5, 4).double(), torch.nn.RNN(4, 6, 2).double(), torch.nn.Linear(6, 5)
    head = head.double()
    params = model.parameters()
    embedding.weight.data = torch.tensor(params["embedding.weight"])
    rnn.load_state_dict({k[4:]: torch.tensor(v) for k, v in params.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: torch.tensor(v) for k, v in params.items() if k.startswith("head.")})
    out, _ = rnn(embedding(torch.tensor(tokens)))
    expected = torch.nn.functional.cross_entropy(head(out).reshape(21, 5), torch.tensor(targets.reshape(21)))
    expected.backward()
    assert_close(loss, expected.detach(), rtol=RTOL)
    named = {f"embedding.{k}": v for k, v in embedding.named_parameters()}
    named.update({f"rnn.{k}": v for k, v in rnn.named_parameters()})
    named.update({f"head.{k}": v for k, v in head.named_parameters()})
    assert set(model.grads) == set(named)
    for key, parameter in named.items():
        assert_close(model.grads[key], parameter.grad, rtol=RTOL)


def test_many_to_one_with_lengths_matches_torch_packed(torch: Any) -> None:
    model = SequenceModel(
        rnn_xp.RNN(3, 5, bidirectional=True, batch_first=True, dtype="float64", seed=0),
        Linear(10, 2, dtype="float64", seed=1),
        many_to_one=True,
    )
    x = np.random.default_rng(0).standard_normal((4, 6, 3))
    lengths = [6, 2, 4, 1]
    grad = np.random.default_rng(1).standard_normal((4, 2))
    prediction, _ = model(x, lengths=lengths)
    model.backward(grad)

    rnn = torch.nn.RNN(3, 5, bidirectional=True, batch_first=True).double()
    head = torch.nn.Linear(10, 2).double()
    params = model.parameters()
    rnn.load_state_dict({k[4:]: torch.tensor(v) for k, v in params.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: torch.tensor(v) for k, v in params.items() if k.startswith("head.")})
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    _, h_n = rnn(packed)
    expected = head(torch.cat([h_n[0], h_n[1]], dim=-1))
    expected.backward(torch.tensor(grad))
    assert_close(prediction, expected.detach(), rtol=RTOL)
    for key, parameter in rnn.named_parameters():
        assert_close(model.grads[f"rnn.{key}"], parameter.grad, rtol=RTOL)
    assert_close(model.grads["head.weight"], head.weight.grad, rtol=RTOL)


def test_simple_rnn_keras_shapes_take_each_sequence_last_step() -> None:
    layer = SimpleRNN(32, 100, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 250, 32)) * 0.1
    lengths = [250, 100, 7, 1]
    last = layer(x, lengths=lengths)
    assert last.shape == (4, 100)
    every = SimpleRNN(32, 100, return_sequences=True, dtype="float64", seed=0)
    states = every(x)
    assert states.shape == (4, 250, 100)
    for b, length in enumerate(lengths):
        alone = every(x[b : b + 1, :length])
        assert_close(last[b], alone[0, -1], rtol=1e-12)
    grad_x = layer.backward(np.ones((4, 100)))
    assert grad_x.shape == x.shape
    assert np.all(grad_x[2, 7:] == 0) and np.any(grad_x[2, :7] != 0)
    assert set(layer.grads) == {f"rnn.{k}" for k in layer.rnn.parameters()}


def test_simple_rnn_set_parameters_names_what_it_expects() -> None:
    from rnn_xp.training import SimpleRNN

    layer = SimpleRNN(3, 4)
    before = {k: v.copy() for k, v in layer.parameters().items()}
    with pytest.raises(ValueError, match=r"params must hold exactly \['rnn.bias_hh_l0'"):
        layer.set_parameters({"weight_hh_l0": np.zeros((4, 4), np.float32)})
    assert all(np.array_equal(layer.parameters()[k], v) for k, v in before.items())


# Issue 11, item 9: the training utilities validate what they are given (each case failed before: a finite loss,
# a silent broadcast, a wrapped index or an accepted hyper-parameter).
_LOGITS = np.zeros((4, 3))
_BAD_TRAINING_CALLS: list[tuple[str, Any, type[Exception], str]] = [
    ("ce-target-too-large", lambda: rnn_xp.training.softmax_cross_entropy(_LOGITS, np.array([0, 1, 2, 3])), ValueError,
     r"targets must lie in \[0, 3\)"),
    ("ce-target-negative", lambda: rnn_xp.training.softmax_cross_entropy(_LOGITS, np.array([0, -1, 2, 1])), ValueError,
     r"targets must lie in \[0, 3\)"),
    ("ce-float-targets", lambda: rnn_xp.training.softmax_cross_entropy(_LOGITS, np.zeros(4)), TypeError,
     r"targets must hold integer class indices"),
    ("mse-broadcast", lambda: rnn_xp.training.mse(np.zeros((5, 1)), np.zeros(5)), ValueError,
     r"target must have the prediction's shape \(5, 1\)"),
    ("embedding-negative-token", lambda: rnn_xp.training.Embedding(4, 2)(np.array([[0, -1]])), ValueError,
     r"tokens must lie in \[0, 4\)"),
    ("embedding-token-too-large", lambda: rnn_xp.training.Embedding(4, 2)(np.array([[4]])), ValueError,
     r"tokens must lie in \[0, 4\)"),
    ("sgd-negative-lr", lambda: rnn_xp.training.SGD(lr=-1), ValueError, r"lr must be >= 0"),
    ("adam-beta-above-one", lambda: rnn_xp.training.Adam(betas=(1.5, 0.999)), ValueError, r"betas must lie in \[0, 1\)"),
    ("adam-negative-eps", lambda: rnn_xp.training.Adam(eps=-1), ValueError, r"eps must be >= 0"),
    ("adam-nan-lr", lambda: rnn_xp.training.Adam(lr=float("nan")), ValueError, r"lr must be a finite number"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in _BAD_TRAINING_CALLS],
                         ids=[c[0] for c in _BAD_TRAINING_CALLS])
def test_training_utilities_refuse_bad_input(call: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call()


def test_optimizer_refuses_a_gradient_of_another_shape_and_changes_nothing() -> None:
    optimizer = rnn_xp.training.Adam(lr=0.1)
    params = {"w": np.ones((3, 3))}
    optimizer.step(params, {"w": np.ones((3, 3))})
    state = {k: {s: v.copy() for s, v in slots.items()} for k, slots in optimizer.state.items()}
    with pytest.raises(ValueError, match=r"grads\['w'\] must have shape \(3, 3\)"):
        optimizer.step(params, {"w": np.ones(1)})
    assert optimizer.steps == 1
    assert all(np.array_equal(optimizer.state["w"][s], v) for s, v in state["w"].items())


def test_sequence_model_set_parameters_is_all_or_nothing() -> None:
    from rnn_xp.training import Linear, SequenceModel

    model = SequenceModel(rnn_xp.RNN(2, 3, dtype="float64"), Linear(3, 1, dtype="float64"))
    before = {k: v.copy() for k, v in model.parameters().items()}
    bad = {k: v + 1 for k, v in before.items()}
    bad["head.weight"] = np.zeros((2, 2))  # wrong shape, after valid rnn entries in iteration order
    with pytest.raises(ValueError, match=r"params\['head.weight'\] must be a ndarray of shape \(1, 3\)"):
        model.set_parameters(bad)
    assert all(np.array_equal(model.parameters()[k], v) for k, v in before.items())


def test_models_pickle_with_their_parameters_and_without_per_thread_state() -> None:
    import pickle

    from rnn_xp.training import Linear, SequenceModel

    model = SequenceModel(rnn_xp.RNN(2, 3, seed=0), Linear(3, 2, seed=1), many_to_one=True)
    logits, _ = model(np.ones((4, 2, 2), dtype=np.float32))
    model.backward(np.ones_like(logits))
    twin = pickle.loads(pickle.dumps(model))
    assert twin.grads == {} and model.grads
    for name, value in model.parameters().items():
        np.testing.assert_array_equal(twin.parameters()[name], value)
    again, _ = twin(np.ones((4, 2, 2), dtype=np.float32))
    np.testing.assert_array_equal(again, logits)
