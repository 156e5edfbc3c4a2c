"""rnn_xp.torch.RNN against torch.nn.RNN: initialisation, state dicts, outputs and every gradient over the parity grid
(tensors and PackedSequence), gradcheck, training with torch.optim, dropout under torch.manual_seed, torch.compile,
double backward, bad arguments, and the CUDA bridge (on a stand-in device here; on a real GPU under ``gpu``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import GRID, HAVE_GPU, assert_close, case_id, make_case

torch = pytest.importorskip("torch")
import rnn_xp.torch as rxt  # noqa: E402  (after the importorskip: this module needs torch)
from rnn_xp.functional import rnn_forward  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """torch on one thread for this module's tiny tensors: its intra-op pool only adds wake-ups there (the grid ran
    3x faster on a busy 2-core machine); the previous setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pair(input_size: int = 5, hidden_size: int = 7, *, dtype: Any = torch.float64, **options: Any) -> tuple[Any, Any]:
    """(ours, torch.nn.RNN) with the same weights."""
    ours = rxt.RNN(input_size, hidden_size, dtype=dtype, **options)
    reference = torch.nn.RNN(input_size, hidden_size, dtype=dtype, **options)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def run(module: Any, x: np.ndarray, h0: np.ndarray | None, grad_out: np.ndarray, grad_h_n: np.ndarray, *,
        dtype: Any, lengths: Any = None, batch_first: bool = False, enforce_sorted: bool = False) -> dict[str, Any]:
    """Outputs (padded) and gradients of loss = <grad_out, out> + <grad_h_n, h_n>; with ``lengths`` the input goes
    in as a PackedSequence and the output is padded back."""
    x_t = torch.tensor(x, dtype=dtype, requires_grad=True)
    h0_t = None if h0 is None else torch.tensor(h0, dtype=dtype, requires_grad=True)
    if lengths is None:
        out, h_n = module(x_t, h0_t)
    else:
        packed = pack_padded_sequence(x_t, torch.as_tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=enforce_sorted)
        packed_out, h_n = module(packed, h0_t)
        assert isinstance(packed_out, torch.nn.utils.rnn.PackedSequence)
        assert torch.equal(packed_out.batch_sizes, packed.batch_sizes)
        for name in ("sorted_indices", "unsorted_indices"):
            expected, got = getattr(packed, name), getattr(packed_out, name)
            assert (expected is None and got is None) or torch.equal(expected, got)
        out, _ = pad_packed_sequence(packed_out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    loss = (out * torch.tensor(grad_out, dtype=dtype)).sum() + (h_n * torch.tensor(grad_h_n, dtype=dtype)).sum()
    loss.backward()
    return {
        "out": out.detach(), "h_n": h_n.detach(), "grad_x": x_t.grad,
        "grad_h0": None if h0_t is None else h0_t.grad,
        "grads": {name: p.grad for name, p in module.named_parameters()},
    }


def assert_same(ours: dict[str, Any], reference: dict[str, Any], rtol: float) -> None:
    for name in ("out", "h_n", "grad_x", "grad_h0"):
        if reference[name] is None:
            assert ours[name] is None
            continue
        assert ours[name].dtype == reference[name].dtype
        assert_close(ours[name], reference[name], rtol=rtol)
    assert list(ours["grads"]) == list(reference["grads"])
    for name, grad in reference["grads"].items():
        assert_close(ours["grads"][name], grad, rtol=rtol)


# -- construction and state dicts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, dict(num_layers=3, bidirectional=True), dict(bias=False, nonlinearity="relu"), dict(num_layers=2, bias=False),
], ids=["plain", "L3-bi", "relu-nobias", "L2-nobias"])
def test_parameters_and_init_are_torchs_under_the_same_seed(options: dict[str, Any]) -> None:
    torch.manual_seed(3)
    ours = rxt.RNN(5, 7, **options)
    torch.manual_seed(3)
    reference = torch.nn.RNN(5, 7, **options)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    for (name, p), q in zip(ours.named_parameters(), reference.parameters(), strict=True):
        assert isinstance(p, torch.nn.Parameter) and p.shape == q.shape and p.dtype == q.dtype, name
        assert torch.equal(p, q), name
    assert [[p.shape for p in weights] for weights in ours.all_weights] == [
        [p.shape for p in weights] for weights in reference.all_weights]


def test_state_dict_loads_both_ways() -> None:
    ours, reference = pair(num_layers=2, bidirectional=True)
    fresh_torch = torch.nn.RNN(5, 7, num_layers=2, bidirectional=True, dtype=torch.float64)
    fresh_torch.load_state_dict(ours.state_dict())  # strict: the same keys, shapes and no extras
    fresh_ours = rxt.RNN(5, 7, num_layers=2, bidirectional=True, dtype=torch.float64)
    fresh_ours.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    for model in (fresh_torch, fresh_ours):
        assert_close(model(x)[0], reference(x)[0], rtol=1e-12)
    with pytest.raises(RuntimeError, match="Missing key"):
        rxt.RNN(5, 7, num_layers=3).load_state_dict(torch.nn.RNN(5, 7, num_layers=2).state_dict())


def test_module_moves_with_to_and_reads_swapped_parameters() -> None:
    ours, reference = pair(dtype=torch.float32)
    ours.double()
    reference.double()
    assert ours.weight_hh_l0.dtype == torch.float64
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    assert_close(ours(x)[0], reference(x)[0], rtol=1e-12)
    swapped = {name: torch.zeros_like(p) for name, p in ours.named_parameters()}
    out, _ = torch.func.functional_call(ours, swapped, (x,))
    assert torch.equal(out, torch.zeros_like(out))


# -- the parity grid -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", GRID, ids=[case_id(c) for c in GRID])
def test_outputs_and_every_gradient_equal_torch_over_the_grid(case: dict[str, Any], dtype: Any) -> None:
    data = make_case(case)
    batch_first = case["batch_first"] and not case["unbatched"]
    ours, reference = pair(num_layers=case["num_layers"], bidirectional=case["bidirectional"],
                           nonlinearity=case["nonlinearity"], bias=case["bias"], batch_first=batch_first,
                           dtype=dtype)
    ours.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in data["params"].items()})
    reference.load_state_dict(ours.state_dict())
    args = (data["x"], data["h0"], data["grad_out"], data["grad_h_n"])
    options = dict(dtype=dtype, lengths=data["lengths"], batch_first=batch_first)
    assert_same(run(ours, *args, **options), run(reference, *args, **options), RTOL[dtype])


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("options", [
    dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, nonlinearity="relu", bias=False),
], ids=["plain", "L2-bi", "batch_first-relu-nobias"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["no_h0", "h0"])
def test_packed_sequences_equal_torch(options: dict[str, Any], enforce_sorted: bool, with_h0: bool) -> None:
    rng = np.random.default_rng(1)
    steps, batch = 6, 5
    lengths = [6, 5, 5, 2, 1] if enforce_sorted else [2, 6, 1, 5, 5]  # ties: the sorted order must be kept
    ours, reference = pair(**options)
    stacked = ours.num_layers * (2 if ours.bidirectional else 1)
    x = rng.standard_normal((batch, steps, 5) if ours.batch_first else (steps, batch, 5))
    h0 = rng.standard_normal((stacked, batch, 7)) if with_h0 else None
    grad_out = rng.standard_normal((*x.shape[:2], 7 * (2 if ours.bidirectional else 1)))
    grad_h_n = rng.standard_normal((stacked, batch, 7))
    kwargs = dict(dtype=torch.float64, lengths=lengths, batch_first=ours.batch_first, enforce_sorted=enforce_sorted)
    ours_result = run(ours, x, h0, grad_out, grad_h_n, **kwargs)
    assert_same(ours_result, run(reference, x, h0, grad_out, grad_h_n, **kwargs), 1e-10)
    padding = torch.arange(steps)[:, None] >= torch.tensor(lengths)[None, :]  # (T, B)
    grad_x = ours_result["grad_x"].transpose(0, 1) if ours.batch_first else ours_result["grad_x"]
    assert torch.all(grad_x[padding] == 0)  # padded steps neither produce nor receive gradient


def test_pack_sequence_of_a_list_equals_torch() -> None:
    ours, reference = pair(num_layers=2, bidirectional=True)
    sequences = [torch.randn(n, 5, dtype=torch.float64) for n in (3, 7, 1)]
    packed = torch.nn.utils.rnn.pack_sequence(sequences, enforce_sorted=False)
    (a, ha), (b, hb) = ours(packed), reference(packed)
    assert_close(a.data, b.data, rtol=1e-10)
    assert_close(ha, hb, rtol=1e-10)


def test_unbatched_input_ignores_batch_first_as_torch_does() -> None:
    ours, reference = pair(num_layers=2, batch_first=True, bidirectional=True)
    x, h0 = torch.randn(6, 5, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    (a, ha), (b, hb) = ours(x, h0), reference(x, h0)
    assert a.shape == b.shape == (6, 14) and ha.shape == hb.shape == (4, 7)
    assert_close(a, b, rtol=1e-10)
    assert_close(ha, hb, rtol=1e-10)


# -- autograd --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    dict(), dict(num_layers=2, bidirectional=True), dict(nonlinearity="relu", batch_first=True),
    dict(bias=False, num_layers=2),
], ids=["plain", "L2-bi", "relu-batch_first", "nobias-L2"])
def test_gradcheck_float64(options: dict[str, Any]) -> None:
    ours = rxt.RNN(3, 4, dtype=torch.float64, **options)
    names = [name for name, _ in ours.named_parameters()]
    stacked = ours.num_layers * (2 if ours.bidirectional else 1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 5, 3) if ours.batch_first else (5, 2, 3), dtype=torch.float64, generator=generator,
                    requires_grad=True)
    h0 = torch.randn(stacked, 2, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]

    def function(x: Any, h0: Any, *params: Any) -> Any:
        return torch.func.functional_call(ours, dict(zip(names, params, strict=True)), (x, h0))

    assert torch.autograd.gradcheck(function, (x, h0, *params))


def test_gradcheck_packed_and_unbatched() -> None:
    ours = rxt.RNN(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)

    def packed(x: Any, h0: Any) -> Any:
        out, h_n = ours(pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=False), h0)
        return out.data, h_n

    assert torch.autograd.gradcheck(packed, (x, h0))
    assert torch.autograd.gradcheck(lambda x, h0: ours(x, h0), (x[:, 0].detach().requires_grad_(),
                                                                 h0[:, 0].detach().requires_grad_()))


def test_only_h_n_or_only_out_used() -> None:
    ours, reference = pair(num_layers=2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    for pick in (0, 1):
        for model in (ours, reference):
            model.zero_grad()
            model(x)[pick].square().sum().backward()
        for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
            assert_close(p.grad, q.grad, rtol=1e-10)


def test_double_backward_raises_a_clear_error() -> None:
    ours = rxt.RNN(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = ours(x)
    with pytest.raises(RuntimeError, match=r"backward \(rnn_xp's BPTT\) is not differentiable: create_graph=True"):
        torch.autograd.grad(out.sum(), x, create_graph=True)


def test_editing_a_parameter_in_place_before_backward_raises_as_in_torch() -> None:
    for model in pair():
        out, _ = model(torch.randn(4, 2, 5, dtype=torch.float64))
        with torch.no_grad():
            model.weight_hh_l0.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


def test_the_cpu_path_shares_memory_with_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arrays rnn_forward receives are views of the tensors (no copy at the boundary), and the tensors returned
    are views of its arrays."""
    seen: dict[str, Any] = {}

    def spy(x: Any, params: Any, h0: Any = None, **kwargs: Any) -> Any:
        seen.update(x=x, params=params, h0=h0)
        seen["result"] = rnn_forward(x, params, h0, **kwargs)
        return seen["result"]

    monkeypatch.setattr(rxt, "rnn_forward", spy)
    ours = rxt.RNN(5, 7)
    x, h0 = torch.randn(4, 3, 5), torch.randn(1, 3, 7)
    out, _h_n = ours(x, h0)
    assert np.shares_memory(seen["x"], x.numpy()) and np.shares_memory(seen["h0"], h0.numpy())
    assert np.shares_memory(seen["params"]["weight_ih_l0"], ours.weight_ih_l0.detach().numpy())
    assert np.shares_memory(out.detach().numpy(), seen["result"][0])


def test_grad_x_is_computed_only_when_the_input_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []

    def spy(*args: Any, input_grad: bool = True, **kwargs: Any) -> Any:
        asked.append(input_grad)
        return rxt_rnn_backward(*args, input_grad=input_grad, **kwargs)

    rxt_rnn_backward = rxt.rnn_backward
    monkeypatch.setattr(rxt, "rnn_backward", spy)
    ours, reference = pair(num_layers=2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    for requires_grad in (False, True):
        for model in (ours, reference):
            model.zero_grad()
            model(x.clone().requires_grad_(requires_grad))[0].sum().backward()
        for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
            assert_close(p.grad, q.grad, rtol=1e-10)
    assert asked == [False, True]


# -- training --------------------------------------------------------------------------------------------------------
def test_training_loop_with_adam_and_clipping_matches_torch() -> None:
    torch.manual_seed(0)
    models = []
    for rnn_type in (rxt.RNN, torch.nn.RNN):
        torch.manual_seed(0)
        rnn = rnn_type(4, 6, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
        head = torch.nn.Linear(12, 1, dtype=torch.float64)
        models.append((rnn, head, torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.01)))
    generator = torch.Generator().manual_seed(1)
    losses: list[list[float]] = [[], []]
    for _ in range(8):
        x = torch.randn(3, 5, 4, dtype=torch.float64, generator=generator)
        target = torch.randn(3, 1, dtype=torch.float64, generator=generator)
        for index, (rnn, head, optimizer) in enumerate(models):
            out, _h_n = rnn(x)
            loss = torch.nn.functional.mse_loss(head(out[:, -1]), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*rnn.parameters(), *head.parameters()], 0.5)
            optimizer.step()
            losses[index].append(loss.item())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-10)
    assert losses[0][-1] != losses[0][0]
    for p, q in zip(models[0][0].parameters(), models[1][0].parameters(), strict=True):
        assert_close(p, q, rtol=1e-9)


def test_dropout_is_repeatable_under_manual_seed_and_off_in_eval() -> None:
    ours, reference = pair(num_layers=3, dropout=0.5)
    x = torch.randn(6, 4, 5, dtype=torch.float64, requires_grad=True)

    def forward_backward(seed: int) -> tuple[Any, Any]:
        torch.manual_seed(seed)
        x.grad = None
        out, _ = ours(x)
        out.sum().backward()
        return out.detach(), x.grad.clone()

    first, again, other = forward_backward(7), forward_backward(7), forward_backward(8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    # The seed rnn_xp draws its masks from is the next draw of torch's generator.
    torch.manual_seed(7)
    seed = int(torch.randint(2**62, (), dtype=torch.int64))
    params = {name: p.detach().numpy() for name, p in ours.named_parameters()}
    expected, _, _ = rnn_forward(x.detach().numpy(), params, dropout=0.5, training=True, seed=seed)
    assert_close(first[0], torch.from_numpy(expected), rtol=1e-12)
    ours.eval()
    reference.eval()
    assert_close(ours(x)[0], reference(x)[0], rtol=1e-10)


# -- torch.compile ---------------------------------------------------------------------------------------------------
def test_torch_compile_of_a_model_using_it_runs_with_a_graph_break() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    rnn = rxt.RNN(3, 8, batch_first=True)
    head = torch.nn.Linear(8, 2)

    def model(x: Any) -> Any:
        out, _ = rnn(torch.tanh(x))
        return head(out[:, -1]).softmax(-1)

    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(4, 6, 3)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    got = compiled(x)
    got.sum().backward()
    assert_close(got, expected, rtol=1e-6)
    for p, grad in zip(rnn.parameters(), grads, strict=True):
        assert_close(p.grad, grad, rtol=1e-6)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count >= 1


# -- bad arguments ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(input_size=0), ValueError, r"input_size must be a positive integer; got 0"),
    (dict(hidden_size="4"), TypeError, r"hidden_size must be a positive integer; got str '4'"),
    (dict(num_layers=1.5), TypeError, r"num_layers must be a positive integer; got float 1.5"),
    (dict(nonlinearity="sigmoid"), ValueError, r"nonlinearity must be one of \('tanh', 'relu'\); got 'sigmoid'"),
    (dict(bias=1), TypeError, r"bias must be True or False; got int 1"),
    (dict(batch_first=None), TypeError, r"batch_first must be True or False; got NoneType None"),
    (dict(bidirectional="yes"), TypeError, r"bidirectional must be True or False; got str 'yes'"),
    (dict(dropout=1.0, num_layers=2), ValueError, r"dropout must be in \[0, 1\); got 1.0"),
    (dict(dropout="0.1"), TypeError, r"dropout must be a float in \[0, 1\); got str '0.1'"),
    (dict(dtype=torch.float16), TypeError, r"dtype must be torch.float32 or torch.float64 .*; got torch.float16"),
    (dict(dtype=torch.int32), TypeError, r"dtype must be torch.float32 or torch.float64 .*; got torch.int32"),
])
def test_bad_constructor_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments = dict(input_size=3, hidden_size=4) | kwargs
    with pytest.raises(error, match=match):
        rxt.RNN(**arguments)


def test_dropout_with_one_layer_warns_as_torch_does() -> None:
    with pytest.warns(UserWarning, match="dropout acts on the output of every layer but the last"):
        rxt.RNN(3, 4, dropout=0.2)


F32 = torch.float32
BAD_CALLS = [
    ("list input", lambda: ([[0.0] * 3],), TypeError, r"input must be a torch.Tensor or a PackedSequence; got list"),
    ("4-D input", lambda: (torch.zeros(2, 2, 2, 3),), ValueError,
     r"input must be 3-D \(T, B, input_size\) or 2-D \(T, input_size\) unbatched; got shape \(2, 2, 2, 3\)"),
    ("input_size", lambda: (torch.zeros(5, 2, 4),), ValueError,
     r"input must have input_size=3 as its last dimension; got shape \(5, 2, 4\)"),
    ("no steps", lambda: (torch.zeros(0, 2, 3),), ValueError, r"at least one time step and one sequence; got shape"),
    ("no batch", lambda: (torch.zeros(5, 0, 3),), ValueError, r"at least one time step and one sequence; got shape"),
    ("input dtype", lambda: (torch.zeros(5, 2, 3, dtype=torch.float64),), TypeError,
     r"input must have dtype torch.float32 \(the parameters' dtype\); got torch.float64"),
    ("integer input", lambda: (torch.zeros(5, 2, 3, dtype=torch.int64),), TypeError,
     r"input must have dtype torch.float32 \(the parameters' dtype\); got torch.int64"),
    ("hx type", lambda: (torch.zeros(5, 2, 3), np.zeros((1, 2, 4))), TypeError,
     r"hx must be a torch.Tensor or None; got ndarray"),
    ("hx shape", lambda: (torch.zeros(5, 2, 3), torch.zeros(1, 3, 4)), ValueError,
     r"hx must have shape \(1, 2, 4\) \(num_layers\*num_directions, batch, hidden_size\); got \(1, 3, 4\)"),
    ("hx 3-D unbatched", lambda: (torch.zeros(5, 3), torch.zeros(1, 1, 4)), ValueError,
     r"hx must have shape \(1, 4\) \(num_layers\*num_directions, hidden_size\) for unbatched input; got \(1, 1, 4\)"),
    ("hx dtype", lambda: (torch.zeros(5, 2, 3), torch.zeros(1, 2, 4, dtype=torch.float64)), TypeError,
     r"hx must have dtype torch.float32 \(the parameters' dtype\); got torch.float64"),
    ("packed 3-D data", lambda: (torch.nn.utils.rnn.PackedSequence(torch.zeros(2, 1, 3), torch.tensor([1, 1])),),
     ValueError, r"input \(a PackedSequence\) must hold 2-D data \(sum of lengths, input_size\); got \(2, 1, 3\)"),
    ("packed hx", lambda: (pack_padded_sequence(torch.zeros(4, 2, 3), [4, 2]), torch.zeros(1, 3, 4)), ValueError,
     r"hx must have shape \(1, 2, 4\)"),
]


@pytest.mark.parametrize(("name", "arguments", "error", "match"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_forward_arguments(name: str, arguments: Any, error: type[Exception], match: str) -> None:
    ours = rxt.RNN(3, 4)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(error, match=match):
        ours(*arguments())
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_parameters_of_another_dtype_or_device_are_refused() -> None:
    half = rxt.RNN(3, 4).half()
    with pytest.raises(TypeError, match=r"the parameters must be torch.float32 or torch.float64 for rnn_xp; got "
                                        r"torch.float16"):
        half(torch.zeros(5, 2, 3, dtype=torch.float16))
    meta = rxt.RNN(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"input must be on meta \(the parameters' device\); got cpu"):
        meta(torch.zeros(5, 2, 3))
    with pytest.raises(ValueError, match=r"runs on CPU and CUDA tensors; the parameters are on meta"):
        meta(torch.zeros(5, 2, 3, device="meta"))
    with pytest.raises(ValueError, match=r"hx must be on cpu \(the parameters' device\); got meta"):
        rxt.RNN(3, 4)(torch.zeros(5, 2, 3), torch.zeros(1, 2, 4, device="meta"))


# -- import and the CUDA bridge --------------------------------------------------------------------------------------
def test_import_rnn_xp_does_not_import_torch_and_rnn_xp_torch_loads_on_use() -> None:
    code = (
        "import sys, rnn_xp\n"
        "assert 'torch' not in sys.modules, 'import rnn_xp imported torch'\n"
        "assert 'torch' in dir(rnn_xp)\n"
        "print(rnn_xp.torch.RNN(2, 3))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "RNN(2, 3)\n"


class StandInCuda:
    """CuPy and torch.cuda as far as rnn_xp.torch's CUDA bridge uses them, over CPU tensors and NumPy arrays: records
    which device and stream were current at every DLPack exchange."""

    STREAM = 0x5EED

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.current: tuple[str, ...] = ()
        self.exchanges: list[tuple[str, tuple[str, ...]]] = []
        stand_in = self

        @contextlib.contextmanager
        def entering(label: str) -> Any:
            before = stand_in.current
            stand_in.current = (*before, label)
            try:
                yield
            finally:
                stand_in.current = before

        self.cuda = types.SimpleNamespace(
            Device=lambda index: entering(f"cupy device {index}"),
            ExternalStream=lambda ptr, index: entering(f"cupy stream {ptr:#x} on {index}"),
        )
        real_from_dlpack = torch.from_dlpack

        def cupy_from_dlpack(tensor: Any) -> np.ndarray:
            self.exchanges.append(("to cupy", self.current))
            return np.from_dlpack(tensor)

        def torch_from_dlpack(array: Any) -> Any:
            self.exchanges.append(("to torch", self.current))
            return real_from_dlpack(array)

        self.from_dlpack = cupy_from_dlpack
        monkeypatch.setattr(rxt, "import_cupy", lambda: self)
        monkeypatch.setattr(torch, "from_dlpack", torch_from_dlpack)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "device", lambda index: entering(f"torch device {index}"))
        monkeypatch.setattr(torch.cuda, "current_stream",
                            lambda index: types.SimpleNamespace(cuda_stream=self.STREAM))
        monkeypatch.setitem(rxt._BRIDGES, "cpu", rxt._Cuda)  # CPU tensors take the CUDA bridge


def test_the_cuda_bridge_exchanges_by_dlpack_on_torchs_current_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path's code (DLPack both ways, torch's device and current stream made CuPy's around every exchange,
    forward and backward) on a stand-in device: the kernels themselves are tested in test_cuda_emulated.py."""
    data = make_case(dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=True,
                          with_h0=True, with_lengths=False, unbatched=False))
    ours, reference = pair(num_layers=2, bidirectional=True, batch_first=True)
    args = (data["x"], data["h0"], data["grad_out"], data["grad_h_n"])
    expected = run(reference, *args, dtype=torch.float64, batch_first=True)
    stand_in = StandInCuda(monkeypatch)
    got = run(ours, *args, dtype=torch.float64, batch_first=True)
    assert_same(got, expected, 1e-10)
    scope = ("torch device 0", "cupy device 0", f"cupy stream {StandInCuda.STREAM:#x} on 0")
    kinds = [kind for kind, _ in stand_in.exchanges]
    # forward: x, h0 and 16 parameters in, out and h_n back; backward: grad_out and grad_h_n in, grad_x, grad_h0 and
    # 16 parameter gradients back
    assert kinds == ["to cupy"] * 18 + ["to torch"] * 2 + ["to cupy"] * 2 + ["to torch"] * 18
    assert all(current == scope for _, current in stand_in.exchanges)


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_GPU, reason="needs an NVIDIA GPU with CuPy; none on this machine")
@pytest.mark.parametrize("packed", [False, True], ids=["tensor", "packed"])
def test_cuda_equals_torch_on_a_side_stream(packed: bool) -> None:
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    data = make_case(dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True, batch_first=False,
                          with_h0=True, with_lengths=packed, unbatched=False))
    ours, reference = pair(num_layers=2, bidirectional=True)
    args = (data["x"], data["h0"], data["grad_out"], data["grad_h_n"])
    expected = run(reference, *args, dtype=torch.float64, lengths=data["lengths"])
    ours.cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = run(_OnCuda(ours), *args, dtype=torch.float64, lengths=data["lengths"])
    torch.cuda.synchronize()
    assert all(g.device.type == "cuda" for g in got["grads"].values())
    got["grads"] = {name: grad.cpu() for name, grad in got["grads"].items()}
    assert_same(got, expected, 1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_GPU, reason="needs an NVIDIA GPU with CuPy; none on this machine")
def test_cuda_gradcheck_float64() -> None:
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    ours = rxt.RNN(3, 4, num_layers=2, dtype=torch.float64, device="cuda")
    x = torch.randn(5, 2, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0: ours(x, h0), (x, h0))


class _OnCuda:
    """A CUDA module fed the CPU tensors :func:`run` makes: the inputs move to the GPU inside the autograd graph and the
    outputs back, so the gradients with respect to the CPU leaves come back to the CPU."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def named_parameters(self) -> Any:
        return self.module.named_parameters()

    def __call__(self, input: Any, hx: Any = None) -> Any:
        input = input.to("cuda")
        out, h_n = self.module(input, None if hx is None else hx.to("cuda"))
        return out.to("cpu"), h_n.to("cpu")


def test_repr_is_torchs() -> None:
    """The module prints as torch.nn.RNN does (rnn_xp also names a relu nonlinearity, which torch leaves out)."""
    for options in ({}, dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)):
        assert repr(rxt.RNN(3, 4, **options)) == repr(torch.nn.RNN(3, 4, **options))
    assert "nonlinearity='relu'" in repr(rxt.RNN(3, 4, nonlinearity="relu"))
