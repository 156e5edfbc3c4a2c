"""rnn_xp.onnx.export: onnx.checker accepts every exported model, and ONNX Runtime's outputs equal rnn_xp's.

The grids: an RNN alone (out and h_n) over lengths x directions x 1-3 layers x batch_first x tanh/relu x bias x h0,
and a SequenceModel (logits and h_n) over many-to-many/many-to-one x lengths x directions x layers x batch_first x
tanh/relu, plus an embedding and a head without bias. float32 only: ONNX Runtime has no float64 RNN kernel, and
export refuses float64 models.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rnn_xp
from rnn_xp.onnx import export
from rnn_xp.training import Embedding, Linear, SequenceModel

requires_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
requires_runtime = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="onnx and onnxruntime are not installed (pip install onnx onnxruntime)",
)

TOLERANCE = 1e-5  # max |ONNX Runtime - rnn_xp|, float32
STEPS, BATCH, INPUT, HIDDEN, CLASSES, VOCABULARY = 7, 4, 5, 6, 3, 11
LENGTHS = np.array([STEPS, 1, 4, STEPS - 1])  # the full length, a single step, and two in between

RNN_GRID = [
    dict(with_lengths=lengths, bidirectional=bidirectional, num_layers=layers, batch_first=batch_first,
         nonlinearity=nonlinearity, bias=bias, with_h0=with_h0)
    for lengths, bidirectional, layers, batch_first, nonlinearity, bias, with_h0 in itertools.product(
        (False, True), (False, True), (1, 2, 3), (False, True), ("tanh", "relu"), (True, False), (False, True))
]
MODEL_GRID = [
    dict(many_to_one=many_to_one, with_lengths=lengths, bidirectional=bidirectional, num_layers=layers,
         batch_first=batch_first, nonlinearity=nonlinearity, embedding=False, head_bias=True)
    for many_to_one, lengths, bidirectional, layers, batch_first, nonlinearity in itertools.product(
        (False, True), (False, True), (False, True), (1, 2), (False, True), ("tanh", "relu"))
] + [
    dict(many_to_one=many_to_one, with_lengths=True, bidirectional=True, num_layers=2, batch_first=batch_first,
         nonlinearity="tanh", embedding=True, head_bias=False)
    for many_to_one, batch_first in itertools.product((False, True), (False, True))
]


def case_id(case: dict[str, Any]) -> str:
    parts = [f"L{case['num_layers']}", "bi" if case["bidirectional"] else "uni", case["nonlinearity"]]
    return "-".join(parts + [name for name, value in case.items() if value is True and name != "bidirectional"])


def run_onnx(proto: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _inputs(rng: np.random.Generator, batch_first: bool, *, steps: int = STEPS, batch: int = BATCH,
            tokens: bool = False) -> np.ndarray:
    shape = (batch, steps) if batch_first else (steps, batch)
    if tokens:
        return rng.integers(0, VOCABULARY, size=shape)
    return rng.standard_normal((*shape, INPUT)).astype(np.float32)


def _stacked(case: dict[str, Any]) -> int:
    return case["num_layers"] * (2 if case["bidirectional"] else 1)


def rnn_differences(case: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Export an RNN for ``case``; max |ONNX Runtime - rnn_xp| of out and h_n (after onnx.checker)."""
    import onnx

    rng = np.random.default_rng(seed)
    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=case["num_layers"], nonlinearity=case["nonlinearity"],
                     bias=case["bias"], batch_first=case["batch_first"], bidirectional=case["bidirectional"],
                     seed=seed)
    proto = export(rnn, io.BytesIO(), with_lengths=case["with_lengths"], with_h0=case["with_h0"])
    onnx.checker.check_model(proto, full_check=True)
    feeds = {"x": _inputs(rng, case["batch_first"])}
    if case["with_h0"]:
        feeds["h0"] = rng.standard_normal((_stacked(case), BATCH, HIDDEN)).astype(np.float32)
    if case["with_lengths"]:
        feeds["lengths"] = LENGTHS
    got = run_onnx(proto, feeds)
    out, h_n = rnn(feeds["x"], feeds.get("h0"), feeds.get("lengths"))
    return {name: _difference(got[name], want) for name, want in (("out", out), ("h_n", h_n))}


def model_differences(case: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Export a SequenceModel for ``case``; max |ONNX Runtime - rnn_xp| of logits and h_n (after onnx.checker)."""
    import onnx

    rng = np.random.default_rng(seed)
    features = VOCABULARY if case["embedding"] else INPUT
    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=case["num_layers"], nonlinearity=case["nonlinearity"],
                     batch_first=case["batch_first"], bidirectional=case["bidirectional"], seed=seed)
    head = Linear((2 if case["bidirectional"] else 1) * HIDDEN, CLASSES, bias=case["head_bias"], seed=seed + 1)
    embedding = Embedding(features, INPUT, seed=seed + 2) if case["embedding"] else None
    model = SequenceModel(rnn, head, embedding=embedding, many_to_one=case["many_to_one"])
    proto = export(model, io.BytesIO(), with_lengths=case["with_lengths"])
    onnx.checker.check_model(proto, full_check=True)
    name = "tokens" if case["embedding"] else "x"
    feeds = {name: _inputs(rng, case["batch_first"], tokens=case["embedding"])}
    if case["with_lengths"]:
        feeds["lengths"] = LENGTHS
    got = run_onnx(proto, feeds)
    logits, h_n = model(feeds[name], lengths=feeds.get("lengths"))
    return {name: _difference(got[name], want) for name, want in (("logits", logits), ("h_n", h_n))}


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    return float(np.max(np.abs(got - want)))


@requires_runtime
@pytest.mark.parametrize("case", RNN_GRID, ids=case_id)
def test_an_exported_rnn_gives_rnn_xps_out_and_h_n(case: dict[str, Any]) -> None:
    differences = rnn_differences(case)
    assert max(differences.values()) <= TOLERANCE, differences


@requires_runtime
@pytest.mark.parametrize("case", MODEL_GRID, ids=case_id)
def test_an_exported_sequence_model_gives_its_logits_and_h_n(case: dict[str, Any]) -> None:
    differences = model_differences(case)
    assert max(differences.values()) <= TOLERANCE, differences


@requires_runtime
def test_one_export_runs_any_sequence_length_and_batch() -> None:
    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    proto = export(rnn, io.BytesIO(), with_lengths=True)
    rng = np.random.default_rng(1)
    for steps, batch in ((1, 1), (3, 2), (12, 5)):
        x = _inputs(rng, True, steps=steps, batch=batch)
        lengths = rng.integers(1, steps + 1, size=batch)
        got = run_onnx(proto, {"x": x, "lengths": lengths})
        out, h_n = rnn(x, lengths=lengths)
        assert _difference(got["out"], out) <= TOLERANCE and _difference(got["h_n"], h_n) <= TOLERANCE


@requires_runtime
def test_dropout_is_left_out_of_the_graph_even_from_a_model_in_training_mode() -> None:
    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=3, dropout=0.5, seed=0)
    proto = export(rnn, io.BytesIO())
    x = _inputs(np.random.default_rng(2), False)
    out, _ = rnn.eval()(x)
    assert _difference(run_onnx(proto, {"x": x})["out"], out) <= TOLERANCE
    assert rnn.train().training and _difference(rnn(x)[0], out) > 0.1  # dropout does change the layer's output


@requires_onnx
def test_the_graph_names_shapes_and_opset() -> None:
    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=3, nonlinearity="relu", bidirectional=True, batch_first=True, seed=0)
    model = SequenceModel(rnn, Linear(2 * HIDDEN, CLASSES), many_to_one=True)
    proto = export(model, io.BytesIO(), with_lengths=True, with_h0=True)

    def dims(values: Any) -> dict[str, list[Any]]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    assert dims(proto.graph.input) == {"x": ["B", "T", INPUT], "lengths": ["B"], "h0": [6, "B", HIDDEN]}
    assert dims(proto.graph.output) == {"logits": ["B", CLASSES], "h_n": [6, "B", HIDDEN]}
    assert [o.version for o in proto.opset_import] == [14] and proto.ir_version == 7
    rnn_nodes = [n for n in proto.graph.node if n.op_type == "RNN"]
    assert [n.name for n in rnn_nodes] == ["rnn_l0", "rnn_l1", "rnn_l2"]
    attributes = {a.name: a for a in rnn_nodes[0].attribute}
    assert attributes["direction"].s == b"bidirectional" and attributes["activations"].strings == [b"Relu"] * 2
    assert all(a.name != "layout" for n in rnn_nodes for a in n.attribute)  # ONNX Runtime refuses layout=1
    weights = {i.name: i for i in proto.graph.initializer}
    assert list(weights["W_l1"].dims) == [2, HIDDEN, 2 * HIDDEN] and list(weights["B_l0"].dims) == [2, 2 * HIDDEN]
    assert proto.producer_name == "rnn_xp"


@requires_onnx
def test_the_layout_of_w_r_and_b_is_torchs_stacked_by_direction() -> None:
    from onnx import numpy_helper

    rnn = rnn_xp.RNN(INPUT, HIDDEN, num_layers=2, bidirectional=True, seed=0)
    weights = {i.name: numpy_helper.to_array(i) for i in export(rnn, io.BytesIO()).graph.initializer}
    params = rnn.parameters()
    np.testing.assert_array_equal(weights["W_l1"][1], params["weight_ih_l1_reverse"])
    np.testing.assert_array_equal(weights["R_l0"][0], params["weight_hh_l0"])
    np.testing.assert_array_equal(weights["B_l1"][1], np.concatenate([params["bias_ih_l1_reverse"],
                                                                      params["bias_hh_l1_reverse"]]))


@requires_onnx
@pytest.mark.parametrize("kind", ["str", "Path", "file"])
def test_export_writes_the_model_it_returns(kind: str, tmp_path: Path) -> None:
    import onnx

    rnn = rnn_xp.RNN(INPUT, HIDDEN, seed=0)
    target = tmp_path / "rnn.onnx"
    if kind == "file":
        with open(target, "wb") as file:
            proto = export(rnn, file)
    else:
        proto = export(rnn, str(target) if kind == "str" else target)
    assert onnx.load(target).SerializeToString() == proto.SerializeToString()


def test_without_onnx_export_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # as where onnx is not installed
    with pytest.raises(ImportError, match=r"rnn_xp.onnx.export needs the onnx package: pip install onnx"):
        export(rnn_xp.RNN(INPUT, HIDDEN), tmp_path / "rnn.onnx")
    assert not (tmp_path / "rnn.onnx").exists()


def test_import_rnn_xp_onnx_does_not_import_onnx() -> None:
    import subprocess

    code = "import sys, rnn_xp.onnx; print('onnx' in sys.modules, 'rnn_xp.training' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout == "False False\n"


def _float64_head_model() -> SequenceModel:
    return SequenceModel(rnn_xp.RNN(INPUT, HIDDEN), Linear(HIDDEN, CLASSES, dtype="float64"))


BAD_CALLS = [
    (lambda: (object(), "m.onnx", {}), TypeError,
     r"model must be an rnn_xp.RNN or an rnn_xp.training.SequenceModel; got object"),
    (lambda: (rnn_xp.RNN(INPUT, HIDDEN), 3, {}), TypeError,
     r"path must be a str, an os.PathLike or a binary file object; got int"),
    (lambda: (rnn_xp.RNN(INPUT, HIDDEN), "m.onnx", {"with_lengths": 1}), TypeError,
     r"with_lengths must be True or False; got int 1"),
    (lambda: (rnn_xp.RNN(INPUT, HIDDEN), "m.onnx", {"with_h0": np.zeros(3)}), TypeError,
     r"with_h0 must be True or False; got ndarray"),
    (lambda: (rnn_xp.RNN(INPUT, HIDDEN, dtype="float64"), "m.onnx", {}), TypeError,
     r"model must be float32 to export \(ONNX Runtime has no float64 RNN kernel\); got rnn of dtype float64"),
    (lambda: (_float64_head_model(), "m.onnx", {}), TypeError,
     r"model must be float32 to export .*; got head.weight of dtype float64"),
    (lambda: (SequenceModel(rnn_xp.RNN(INPUT, HIDDEN, bidirectional=True), Linear(HIDDEN, CLASSES)), "m.onnx", {}),
     ValueError, r"model.head must take 12 features \(the RNN's num_directions\*hidden_size\); got a weight of "
     r"shape \(3, 6\)"),
    (lambda: (SequenceModel(rnn_xp.RNN(INPUT, HIDDEN), Linear(HIDDEN, CLASSES), embedding=Embedding(9, 4)),
              "m.onnx", {}),
     ValueError, r"model.embedding must give 5 features \(the RNN's input_size\); got a weight of shape \(9, 4\)"),
]


BAD_CALL_IDS = ["model", "path", "with_lengths", "with_h0", "float64-rnn", "float64-head", "head-size",
                "embedding-size"]


@pytest.mark.parametrize(("make", "error", "match"), BAD_CALLS, ids=BAD_CALL_IDS)
def test_bad_arguments_are_refused_and_nothing_is_written(make: Any, error: type[Exception], match: str,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model, path, options = make()
    with pytest.raises(error, match=match):
        export(model, path, **options)
    assert list(tmp_path.iterdir()) == []
