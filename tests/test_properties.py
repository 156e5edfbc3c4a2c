"""The fuzzing pass of issue 11, kept in the suite: hypothesis properties over the public API.

Each property covers one category the fuzzer probed (~29,000 calls): a call either computes the right numbers or
raises a ValueError/TypeError naming the argument and changes nothing; padding, dead units and in-place edits never
reach the gradients; truncation is capped; the training utilities validate; a corrupted checkpoint never loads
silently; the CLI answers bad input with one line and exit code 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_close, random_params
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rnn_xp
from rnn_xp.functional import rnn_backward, rnn_forward

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.fixed_dictionaries(
    {
        "input_size": st.integers(1, 4),
        "hidden_size": st.integers(1, 5),
        "num_layers": st.integers(1, 3),
        "bidirectional": st.booleans(),
        "bias": st.booleans(),
        "nonlinearity": st.sampled_from(["tanh", "relu"]),
        "batch_first": st.booleans(),
    }
)


def _layer(config: dict[str, Any]) -> rnn_xp.RNN:
    return rnn_xp.RNN(**config, dtype="float64", seed=0)


def _x_shape(config: dict[str, Any], steps: int, batch: int) -> tuple[int, int, int]:
    if config["batch_first"]:
        return (batch, steps, config["input_size"])
    return (steps, batch, config["input_size"])


def _perturbed(shape: tuple[int, ...], data: st.DataObject) -> tuple[int, ...]:
    """``shape`` with one axis changed, one axis added or one removed."""
    kind = data.draw(st.sampled_from(["change", "add", "drop"]))
    dims = list(shape)
    if kind == "change":
        axis = data.draw(st.integers(0, len(dims) - 1))
        dims[axis] = data.draw(st.integers(0, 7).filter(lambda n, old=dims[axis]: n != old))
    elif kind == "add":
        dims.insert(data.draw(st.integers(0, len(dims))), data.draw(st.integers(1, 3)))
    else:
        dims.pop(data.draw(st.integers(0, len(dims) - 1)))
    return tuple(dims)


@PROPERTY
@given(config=configs, steps=st.integers(1, 5), batch=st.integers(1, 3), data=st.data())
def test_a_layer_call_is_right_or_refused_naming_the_argument_with_nothing_changed(
    config: dict[str, Any], steps: int, batch: int, data: st.DataObject
) -> None:
    rnn = _layer(config)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    directions = 2 if config["bidirectional"] else 1
    x = rng.standard_normal(_x_shape(config, steps, batch))
    h0 = rng.standard_normal((config["num_layers"] * directions, batch, config["hidden_size"]))
    lengths: Any = list(rng.integers(1, steps + 1, size=batch))
    # A valid forward first, so that "nothing changed" also covers the cache its backward reads.
    out, _ = rnn(x, h0, lengths)
    grad = rng.standard_normal(out.shape)
    reference = rnn.backward(grad), dict(rnn.grads)
    out, _ = rnn(x, h0, lengths)
    before = rnn.state_dict()

    fault = data.draw(st.sampled_from(["none", "x shape", "h0 shape", "x dtype", "lengths value", "lengths shape",
                                       "lengths dtype", "x type", "h0 type"]))
    argument = fault.split()[0]
    if fault == "x shape":
        shape = _perturbed(x.shape, data)
        time_axis = 1 if config["batch_first"] else 0
        only_time_changed = len(shape) == 3 and all(shape[i] == x.shape[i] for i in range(3) if i != time_axis)
        assume(len(shape) != 2 and not (only_time_changed and shape[time_axis] >= max(lengths)))  # those are valid
        x = rng.standard_normal(shape)
        batch_axis = 0 if config["batch_first"] else 1
        if 0 in shape:
            argument = "x"  # no time step or no sequence: x itself is refused
        elif only_time_changed:
            argument = "lengths"  # a shorter sequence than the lengths say: the lengths are what is out of range
        elif len(shape) == 3 and shape[batch_axis] != batch and shape[2] == config["input_size"]:
            argument = "h0|lengths"  # x's batch disagrees with h0's and the lengths': the first one checked is named
    elif fault == "h0 shape":
        h0 = rng.standard_normal(_perturbed(h0.shape, data))
    elif fault == "x dtype":
        x = x.astype(data.draw(st.sampled_from([np.float32, np.int64, np.complex128, np.bool_])))
    elif fault == "lengths value":
        lengths[data.draw(st.integers(0, batch - 1))] = data.draw(
            st.one_of(st.integers(-3, 0), st.integers(steps + 1, steps + 1000))
        )
    elif fault == "lengths shape":
        lengths = [*lengths, 1] if data.draw(st.booleans()) else [lengths]
    elif fault == "lengths dtype":
        lengths = np.asarray(lengths, dtype=np.float64) + 0.5
    elif fault == "x type":
        x = data.draw(st.sampled_from([x.tolist(), 0.0, "x", None]))
    elif fault == "h0 type":
        h0 = data.draw(st.sampled_from([h0.tolist(), 0.0, "h0"]))

    if fault == "none":
        got, _ = rnn(x, h0, lengths)
        torch = pytest.importorskip("torch")
        assert_close(got, _torch_output(torch, rnn, x, h0, lengths), rtol=1e-10)
        return
    with pytest.raises((ValueError, TypeError), match=argument):
        rnn(x, h0, lengths)
    after = rnn.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    grads_again = rnn.backward(grad)
    for got_grad, expected in zip(grads_again, reference[0], strict=True):
        np.testing.assert_array_equal(got_grad, expected)


def _torch_output(torch: Any, rnn: rnn_xp.RNN, x: np.ndarray, h0: np.ndarray, lengths: list[int]) -> np.ndarray:
    layer = torch.nn.RNN(rnn.input_size, rnn.hidden_size, num_layers=rnn.num_layers, nonlinearity=rnn.nonlinearity,
                         bias=rnn.bias, batch_first=rnn.batch_first, bidirectional=rnn.bidirectional,
                         dtype=torch.float64)
    layer.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=rnn.batch_first, enforce_sorted=False
    )
    with torch.no_grad():
        out, _ = layer(packed, torch.from_numpy(h0))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=rnn.batch_first, total_length=x.shape[
        1 if rnn.batch_first else 0])
    return padded.numpy()


@PROPERTY
@given(config=configs, steps=st.integers(2, 6), batch=st.integers(2, 3), poison=st.sampled_from([np.nan, np.inf,
       -np.inf, 1e308]), data=st.data())
def test_whatever_lies_on_the_padding_never_reaches_the_gradients(
    config: dict[str, Any], steps: int, batch: int, poison: float, data: st.DataObject
) -> None:
    rnn = _layer(config)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = data.draw(st.integers(1, steps - 1))  # at least one padded step
    x = rng.standard_normal(_x_shape(config, steps, batch))
    grad_out_shape = (*x.shape[:2], rnn.hidden_size * (2 if config["bidirectional"] else 1))
    grad_out = rng.standard_normal(grad_out_shape)
    padded = np.arange(steps)[:, None] >= lengths[None, :]  # (T, B)
    if config["batch_first"]:
        padded = padded.T
    clean_out, _ = rnn(np.where(padded[..., None], 0.0, x), lengths=lengths)
    clean_grad_x, _ = rnn.backward(np.where(padded[..., None], 0.0, grad_out))
    clean = dict(rnn.grads)
    out, _ = rnn(np.where(padded[..., None], poison, x), lengths=lengths)
    grad_x, _ = rnn.backward(np.where(padded[..., None], poison, grad_out))
    np.testing.assert_array_equal(out, clean_out)
    np.testing.assert_array_equal(grad_x, clean_grad_x)
    for name, value in clean.items():
        np.testing.assert_array_equal(rnn.grads[name], value, err_msg=name)


@PROPERTY
@given(config=configs, steps=st.integers(1, 5), truncate=st.one_of(st.integers(0, 8), st.integers(10**6, 10**15)),
       edit=st.sampled_from(["x", "h0", "out", "nothing"]), scale=st.floats(-5, 5, allow_nan=False))
def test_backward_differentiates_the_forward_as_it_ran_for_any_truncation(
    config: dict[str, Any], steps: int, truncate: int, edit: str, scale: float
) -> None:
    rng = np.random.default_rng(steps + truncate % 97)
    params = random_params(rng, input_size=config["input_size"], hidden_size=config["hidden_size"],
                           num_layers=config["num_layers"], bidirectional=config["bidirectional"],
                           bias=config["bias"])
    directions = 2 if config["bidirectional"] else 1
    x = rng.standard_normal(_x_shape(config, steps, 2))
    h0 = rng.standard_normal((config["num_layers"] * directions, 2, config["hidden_size"]))
    options = dict(nonlinearity=config["nonlinearity"], batch_first=config["batch_first"])
    pristine = rnn_forward(x.copy(), params, h0.copy(), **options)[2]
    out, _, cache = rnn_forward(x, params, h0, **options)
    grad = rng.standard_normal(out.shape)
    {"x": x, "h0": h0, "out": out, "nothing": np.empty(0)}[edit][...] *= scale
    got = rnn_backward(cache, grad, bptt_truncate=truncate)
    expected = rnn_backward(pristine, grad, bptt_truncate=truncate)
    if truncate >= steps:  # a window of T or more steps is full BPTT, with no buffer sized by the window
        expected = rnn_backward(pristine, grad)
    for a, b in zip(got[:2], expected[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    for name, value in expected[2].items():
        np.testing.assert_array_equal(got[2][name], value, err_msg=name)


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))


@PROPERTY
@given(lr=finite_or_not, momentum=finite_or_not, beta1=finite_or_not, beta2=finite_or_not, eps=finite_or_not)
def test_optimizers_accept_exactly_torchs_hyperparameter_ranges(
    lr: float, momentum: float, beta1: float, beta2: float, eps: float
) -> None:
    from rnn_xp.training import SGD, Adam

    def valid(value: float, low: float, high: float = math.inf) -> bool:
        return math.isfinite(value) and low <= value < high

    for make, ok in (
        (lambda: SGD(lr=lr, momentum=momentum), valid(lr, 0) and valid(momentum, 0)),
        (lambda: Adam(lr=lr, betas=(beta1, beta2), eps=eps),
         valid(lr, 0) and valid(beta1, 0, 1) and valid(beta2, 0, 1) and valid(eps, 0)),
    ):
        if ok:
            make()
        else:
            with pytest.raises((ValueError, TypeError), match=r"lr|momentum|beta|eps"):
                make()


@PROPERTY
@given(rows=st.integers(1, 6), classes=st.integers(1, 5), data=st.data())
def test_cross_entropy_is_finite_and_right_or_names_the_targets(rows: int, classes: int, data: st.DataObject) -> None:
    from rnn_xp.training import softmax_cross_entropy

    logits = np.random.default_rng(rows * 7 + classes).standard_normal((rows, classes))
    values = data.draw(st.lists(st.integers(-3, classes + 3), min_size=rows, max_size=rows))
    as_float = data.draw(st.booleans())
    targets = np.asarray(values, dtype=np.float64 if as_float else np.int64)
    if as_float or min(values) < 0 or max(values) >= classes:
        with pytest.raises(TypeError if as_float else ValueError, match="targets"):
            softmax_cross_entropy(logits, targets)
        return
    loss, _ = softmax_cross_entropy(logits, targets)
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(rows), targets])
    assert math.isclose(float(loss), float(expected), rel_tol=1e-12, abs_tol=1e-12)


@settings(PROPERTY, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_a_flipped_bit_anywhere_in_a_checkpoint_never_loads_silently(offset: int, bit: int, tmp_path_factory: Any
                                                                     ) -> None:
    from rnn_xp.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = Path(tmp_path_factory.mktemp("ckpt")) / "run.safetensors"
    params = random_params(np.random.default_rng(1), input_size=2, hidden_size=3, dtype="float32")
    state = {"step": 12, "config": {"hidden": 3}}
    save_checkpoint(path, params=params, optimizer_arrays={"m": np.arange(4.0)}, state=state)
    data = bytearray(path.read_bytes())
    offset %= len(data)
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))
    try:
        loaded, optimizer, loaded_state = load_checkpoint(path, expected_params=params)
    except CheckpointError as error:
        assert str(path) in str(error)
        return
    # The flip may land where it changes nothing that is read (JSON whitespace turned into other whitespace).
    assert loaded_state == state
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    np.testing.assert_array_equal(optimizer["m"], np.arange(4.0))


bad_numbers = st.one_of(st.integers(-10**6, -1).map(str), st.sampled_from(["nan", "-inf", "abc", "", "-1e400"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from([
    ["bench", "--hidden"], ["bench", "--batches"], ["bench", "--seq-lens"], ["train", "adding", "--lr"],
    ["train", "charlm", "--max-seconds"], ["train", "adding", "--max-updates"], ["sample", "--temperature"],
]), value=bad_numbers)
def test_the_cli_answers_bad_numbers_with_one_line_and_exit_code_2(
    command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnn_xp.cli import main

    args = [*command, value]
    if command[0] == "sample":
        args = ["sample", "--checkpoint", "missing.safetensors", *args[1:]]
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's errors leave through SystemExit, as in the shell
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnn-xp: error:"), err
