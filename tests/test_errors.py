"""Every bad input raises ValueError/TypeError naming the argument, expected vs got, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import rnn_xp
from rnn_xp.functional import rnn_backward, rnn_forward

T, B, I, H = 5, 3, 4, 6  # noqa: E741 (torch's names for the sizes)


def _layer() -> rnn_xp.RNN:
    """A 2-layer bidirectional float32 layer that has done one forward and one backward."""
    rnn = rnn_xp.RNN(I, H, num_layers=2, bidirectional=True, seed=0)
    out, h_n = rnn(_x())
    rnn.backward(np.ones_like(out), np.ones_like(h_n))
    return rnn


def _x(shape: tuple[int, ...] = (T, B, I), dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _snapshot(rnn: rnn_xp.RNN) -> tuple[Any, ...]:
    return (
        {k: v.copy() for k, v in rnn.state_dict().items()},
        {k: v.copy() for k, v in rnn.grads.items()},
        rnn._cache,
        rnn.training,
        rnn.device,
    )


def _assert_unchanged(rnn: rnn_xp.RNN, before: tuple[Any, ...]) -> None:
    params, grads, cache, training, device = _snapshot(rnn)
    assert params.keys() == before[0].keys() and all(np.array_equal(params[k], before[0][k]) for k in params)
    assert grads.keys() == before[1].keys() and all(np.array_equal(grads[k], before[1][k]) for k in grads)
    assert cache is before[2]
    assert (training, device) == before[3:]


def _state(rnn: rnn_xp.RNN, **changes: Any) -> dict[str, Any]:
    state = rnn.state_dict()
    for name, value in changes.items():
        if value is None:
            del state[name]
        else:
            state[name] = value
    return state


def _torch_h0() -> Any:
    torch = pytest.importorskip("torch")
    return torch.zeros(4, B, H)


# (id, call on a trained layer, exception, message pattern)
LAYER_CASES: list[tuple[str, Callable[[rnn_xp.RNN], Any], type[Exception], str]] = [
    ("x-1d", lambda r: r(_x((T,))), ValueError, r"x must be 3-D .*got shape \(5,\)"),
    ("x-4d", lambda r: r(_x((T, B, I, 1))), ValueError, r"x must be 3-D"),
    ("x-wrong-input-size", lambda r: r(_x((T, B, I + 1))), ValueError, r"input_size=4 .*got shape \(5, 3, 5\)"),
    ("x-zero-steps", lambda r: r(_x((0, B, I))), ValueError, r"x must have at least one time step"),
    ("x-zero-batch", lambda r: r(_x((T, 0, I))), ValueError, r"x must have a batch of at least one"),
    ("x-integer", lambda r: r(np.ones((T, B, I), dtype=np.int64)), TypeError, r"x must have a real floating dtype"),
    ("x-complex", lambda r: r(np.ones((T, B, I), dtype=np.complex64)), TypeError, r"x must have a real floating"),
    ("x-float64-for-float32", lambda r: r(_x(dtype=np.float64)), TypeError, r"x must have dtype float32 .*float64"),
    ("x-not-an-array", lambda r: r([[1.0] * I] * T), TypeError, r"x must be an array; got list"),
    ("h0-a-float", lambda r: r(_x(), 0.0), TypeError, r"h0 must be an array; got float"),
    ("x-numpy-matrix", lambda r: r(np.matrix(np.zeros((T, I), np.float32))), TypeError, r"x must be a plain array; got numpy.matrix"),
    ("x-masked-array", lambda r: r(np.ma.masked_array(_x())), TypeError, r"x must be a plain array; got numpy\.ma(\.core)?\.MaskedArray"),
    ("set-parameter-name-not-str", lambda r: r.set_parameter(["w"], np.zeros((H, H), np.float32)), TypeError, r"name must be a string"),
    ("state-dict-bfloat16", lambda r: r.load_state_dict({k: pytest.importorskip("torch").from_numpy(v).to(pytest.importorskip("torch").bfloat16) for k, v in r.state_dict().items()}), TypeError, r"state_dict\['weight_ih_l0'\] has dtype torch.bfloat16"),
    ("state-dict-meta-tensor", lambda r: r.load_state_dict({k: pytest.importorskip("torch").empty(v.shape, device="meta") for k, v in r.state_dict().items()}), ValueError, r"state_dict\['weight_ih_l0'\] is a meta tensor"),
    ("h0-wrong-layers", lambda r: r(_x(), _x((2, B, H))), ValueError, r"h0 must have shape \(4, 3, 6\) .*got \(2, 3, 6\)"),
    ("h0-wrong-batch", lambda r: r(_x(), _x((4, B + 1, H))), ValueError, r"h0 must have shape \(4, 3, 6\)"),
    ("h0-2d-for-batched-x", lambda r: r(_x(), _x((4, H))), ValueError, r"h0 must have shape \(4, 3, 6\)"),
    ("h0-dtype", lambda r: r(_x(), _x((4, B, H), np.float64)), TypeError, r"h0 must have dtype float32"),
    ("h0-other-namespace", lambda r: r(_x(), _torch_h0()), TypeError, r"single array-API namespace"),
    ("lengths-too-long", lambda r: r(_x(), lengths=[T + 1, 1, 1]), ValueError, r"lengths must lie in \[1, T=5\]; got values from 1 to 6"),
    ("lengths-zero", lambda r: r(_x(), lengths=[0, 1, 1]), ValueError, r"lengths must lie in \[1, T=5\]"),
    ("lengths-float", lambda r: r(_x(), lengths=[1.0, 2.0, 3.0]), TypeError, r"lengths must hold integers; got dtype float64"),
    ("lengths-wrong-size", lambda r: r(_x(), lengths=[1, 2]), ValueError, r"lengths must have shape \(3,\) \(batch,\); got \(2,\)"),
    ("lengths-2d", lambda r: r(_x(), lengths=np.ones((B, 1), dtype=int)), ValueError, r"lengths must have shape \(3,\)"),
    ("lengths-unbatched", lambda r: r(_x((T, I)), lengths=[T]), ValueError, r"lengths must be None for unbatched"),
    ("lengths-nested", lambda r: r(_x(), lengths=[[1], [2, 3], 4]), TypeError, r"lengths must be a flat sequence"),
    ("grad-out-shape", lambda r: r.backward(np.ones((T, B, H), np.float32)), ValueError, r"grad_out must have shape \(5, 3, 12\) .*got \(5, 3, 6\)"),
    ("grad-out-dtype", lambda r: r.backward(np.ones((T, B, 2 * H))), TypeError, r"grad_out must have dtype float32"),
    ("grad-out-integer", lambda r: r.backward(np.ones((T, B, 2 * H), dtype=np.int32)), TypeError, r"grad_out must have a real floating"),
    ("grad-h-n-shape", lambda r: r.backward(None, np.ones((2, B, H), np.float32)), ValueError, r"grad_h_n must have shape \(4, 3, 6\)"),
    ("grads-both-none", lambda r: r.backward(None, None), ValueError, r"needs grad_out or grad_h_n"),
    ("bptt-truncate-negative", lambda r: r.backward(np.ones((T, B, 2 * H), np.float32), bptt_truncate=-1), ValueError, r"bptt_truncate must be None or an integer >= 0; got -1"),
    ("bptt-truncate-float", lambda r: r.backward(np.ones((T, B, 2 * H), np.float32), bptt_truncate=2.5), TypeError, r"bptt_truncate must be None or an integer"),
    ("state-missing", lambda r: r.load_state_dict(_state(r, weight_hh_l1=None)), ValueError, r"missing \['weight_hh_l1'\]"),
    ("state-extra", lambda r: r.load_state_dict(_state(r, weight_hh_l2=np.ones((H, H), np.float32))), ValueError, r"unexpected \['weight_hh_l2'\]"),
    ("state-shape", lambda r: r.load_state_dict(_state(r, weight_hh_l1=np.ones((H, H + 1), np.float32))), ValueError, r"state_dict\['weight_hh_l1'\] must have shape \(6, 6\); got \(6, 7\)"),
    ("state-dtype", lambda r: r.load_state_dict(_state(r, bias_ih_l0=np.ones(H))), TypeError, r"state_dict\['bias_ih_l0'\] must have dtype float32 .*got float64"),
    ("state-not-array", lambda r: r.load_state_dict(_state(r, bias_ih_l0=[0.0] * H)), TypeError, r"state_dict\['bias_ih_l0'\] must be an array"),
    ("state-not-mapping", lambda r: r.load_state_dict([1, 2]), TypeError, r"state_dict must be a mapping"),
    ("to-unknown-device", lambda r: r.to("tpu"), ValueError, r"device must be 'cpu', 'cuda' or 'cuda:N'; got 'tpu'"),
    ("train-not-bool", lambda r: r.train("yes"), TypeError, r"mode must be True or False"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in LAYER_CASES], ids=[c[0] for c in LAYER_CASES])
def test_bad_call_raises_and_leaves_the_layer_unchanged(
    call: Callable[[rnn_xp.RNN], Any], error: type[Exception], pattern: str
) -> None:
    rnn = _layer()
    before = _snapshot(rnn)
    with pytest.raises(error, match=pattern):
        call(rnn)
    _assert_unchanged(rnn, before)


def test_backward_before_forward() -> None:
    rnn = rnn_xp.RNN(I, H, seed=0)
    before = _snapshot(rnn)
    with pytest.raises(ValueError, match=r"backward\(\) needs a forward pass first"):
        rnn.backward(np.ones((T, B, H), np.float32))
    _assert_unchanged(rnn, before)


CONSTRUCTOR_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("input-size-zero", dict(input_size=0), ValueError, r"input_size must be a positive integer; got 0"),
    ("hidden-size-negative", dict(hidden_size=-2), ValueError, r"hidden_size must be a positive integer; got -2"),
    ("num-layers-zero", dict(num_layers=0), ValueError, r"num_layers must be a positive integer; got 0"),
    ("hidden-size-float", dict(hidden_size=4.0), TypeError, r"hidden_size must be a positive integer; got float"),
    ("nonlinearity", dict(nonlinearity="sigmoid"), ValueError, r"nonlinearity must be one of \('tanh', 'relu'\); got 'sigmoid'"),
    ("dropout-one", dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\); got 1.0"),
    ("dropout-negative", dict(dropout=-0.1), ValueError, r"dropout must be in \[0, 1\); got -0.1"),
    ("dropout-string", dict(dropout="0.1"), TypeError, r"dropout must be a float"),
    ("device-unknown", dict(device="gpu"), ValueError, r"device must be 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"),
    ("device-not-string", dict(device=0), TypeError, r"device must be a string"),
    ("dtype-unknown", dict(dtype="float16"), ValueError, r"dtype must be one of \('float32', 'float64'\); got 'float16'"),
    ("dtype-int", dict(dtype=np.int32), TypeError, r"dtype must be one of"),
    ("bias-not-bool", dict(bias=1), TypeError, r"bias must be True or False; got int 1"),
    ("seed-negative", dict(seed=-1), ValueError, r"seed must be None or a non-negative integer; got -1"),
    ("seed-float", dict(seed=1.5), TypeError, r"seed must be None or a non-negative integer"),
]


@pytest.mark.parametrize(("options", "error", "pattern"), [c[1:] for c in CONSTRUCTOR_CASES],
                         ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_bad_constructor_argument(options: dict[str, Any], error: type[Exception], pattern: str) -> None:
    arguments: dict[str, Any] = dict(input_size=I, hidden_size=H, **{"device": "cpu"})
    arguments.update(options)
    with pytest.raises(error, match=pattern):
        rnn_xp.RNN(**arguments)


def _params(**changes: Any) -> dict[str, Any]:
    params = rnn_xp.RNN(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=0).state_dict()
    for name, value in changes.items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    return params


FUNCTIONAL_CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("params-not-mapping", lambda: rnn_forward(_x(dtype=np.float64), [1]), TypeError, r"params must be a mapping"),
    ("params-missing-reverse", lambda: rnn_forward(_x(dtype=np.float64), _params(weight_hh_l1_reverse=None)), ValueError, r"params is missing \['weight_hh_l1_reverse'\]"),
    ("params-layer-gap", lambda: rnn_forward(_x(dtype=np.float64), {k: v for k, v in _params().items() if "_l0" in k} | {k.replace("_l1", "_l2"): v for k, v in _params().items() if "_l1" in k}), ValueError, r"params is missing \['weight_ih_l1'"),
    ("params-0d-weight", lambda: rnn_forward(_x(dtype=np.float64), _params(weight_hh_l0=np.float64(1.0))), ValueError, r"params\['weight_hh_l0'\] must be 2-D"),
    ("params-bad-shape", lambda: rnn_forward(_x(dtype=np.float64), _params(bias_hh_l0=np.ones(H + 1))), ValueError, r"params\['bias_hh_l0'\] must have shape \(6,\); got \(7,\)"),
    ("params-mixed-dtype", lambda: rnn_forward(_x(dtype=np.float64), _params(bias_hh_l0=np.ones(H, np.float32))), TypeError, r"params\['bias_hh_l0'\] must have dtype float64"),
    ("params-integer", lambda: rnn_forward(np.ones((T, B, I), int), {k: np.ones(v.shape, int) for k, v in _params().items()}), TypeError, r"must have a real floating dtype"),
    ("x-and-params-namespaces", lambda: rnn_forward(pytest.importorskip("torch").zeros(T, B, I, dtype=pytest.importorskip("torch").float64), _params()), TypeError, r"single array-API namespace"),
    ("cache-not-a-cache", lambda: rnn_backward({"out": 1}, np.ones(3)), TypeError, r"cache must be the ForwardCache"),
    ("grad-out-namespace", lambda: rnn_backward(rnn_forward(_x(dtype=np.float64), _params())[2], pytest.importorskip("torch").zeros(T, B, 2 * H, dtype=pytest.importorskip("torch").float64)), TypeError, r"grad_out must be an array of the forward's namespace"),
    ("training-not-bool", lambda: rnn_forward(_x(dtype=np.float64), _params(), training=1), TypeError, r"training must be True or False"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in FUNCTIONAL_CASES],
                         ids=[c[0] for c in FUNCTIONAL_CASES])
def test_bad_functional_call(call: Callable[[], Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call()


ATTRIBUTES = [  # (attribute, bad value, the constructor's keyword for it or None)
    ("dropout", 1.5, "dropout"),
    ("dropout", 1, "dropout"),
    ("dropout", -0.1, "dropout"),
    ("dropout", "0.5", "dropout"),
    ("nonlinearity", "sigmoid", "nonlinearity"),
    ("batch_first", 1, "batch_first"),
    ("loop", "fast", "loop"),
    ("dtype", "float16", "dtype"),
    ("training", "yes", None),
]


@pytest.mark.parametrize(("name", "value", "keyword"), ATTRIBUTES)
def test_an_attribute_set_later_gets_the_constructors_check(name: str, value: Any, keyword: str | None) -> None:
    rnn = _layer()
    before = _snapshot(rnn)
    kept = getattr(rnn, name)
    with pytest.raises((ValueError, TypeError)) as later:
        setattr(rnn, name, value)
    assert getattr(rnn, name) == kept
    _assert_unchanged(rnn, before)
    if keyword is not None:
        with pytest.raises(later.type) as at_construction:
            rnn_xp.RNN(I, H, **{keyword: value})
        assert str(later.value) == str(at_construction.value)
    else:
        assert str(later.value) == f"{name} must be True or False; got str {value!r}"


def test_dropout_set_later_to_one_fails_at_once_not_in_training() -> None:
    rnn = rnn_xp.RNN(I, H, num_layers=2, seed=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got 1"):
        rnn.dropout = 1
    rnn.dropout = 0.25  # a good value is kept and used
    out, _ = rnn(_x())
    assert rnn.dropout == 0.25 and np.isfinite(out).all()


def test_the_dtype_cannot_change_after_construction() -> None:
    rnn = rnn_xp.RNN(I, H, seed=0)
    rnn.dtype = np.float32  # the same dtype, spelled another way: accepted
    with pytest.raises(ValueError, match=r"dtype cannot change after construction \(the parameters are float32\); "
                                         r"got 'float64'"):
        rnn.dtype = "float64"
    assert rnn.dtype == "float32"


@pytest.mark.parametrize(("attribute", "build"), [
    ("many_to_one", lambda: _sequence_model()),
    ("return_sequences", lambda: _simple_rnn()),
])
def test_the_training_models_check_their_switches_when_set(attribute: str, build: Callable[[], Any]) -> None:
    model = build()
    with pytest.raises(TypeError, match=rf"{attribute} must be True or False; got int 1"):
        setattr(model, attribute, 1)
    assert getattr(model, attribute) is False


def _sequence_model() -> Any:
    from rnn_xp.training import Linear, SequenceModel

    return SequenceModel(rnn_xp.RNN(I, H, seed=0), Linear(H, 2, seed=0))


def _simple_rnn() -> Any:
    from rnn_xp.training import SimpleRNN

    return SimpleRNN(I, H, seed=0)
