"""ONNX export: an :class:`rnn_xp.RNN` or a :class:`rnn_xp.training.SequenceModel` as an ONNX model built on
ONNX's own ``RNN`` operator, for ONNX Runtime and the other runtimes that run ONNX.

:func:`export` needs the ``onnx`` package (``pip install onnx``); ``import rnn_xp.onnx`` alone does not
import it.

The graph (opset 14, IR version 7)
----------------------------------
- Each layer is one ``RNN`` node: both directions in one node (``direction="bidirectional"``), ``activations``
  Tanh or Relu, and torch's weights in ONNX's layout, ``W`` (D, H, in) the stacked ``weight_ih``, ``R`` (D, H, H)
  the stacked ``weight_hh`` and ``B`` (D, 2H) = ``[bias_ih, bias_hh]`` (no ``B`` with ``bias=False``). The node's
  output ``Y`` (T, D, B, H) is transposed and reshaped to (T, B, D*H), the next layer's input; its ``Y_h``
  (D, B, H) of every layer, concatenated, is ``h_n``.
- ``lengths`` go to every node's ``sequence_lens``: as in rnn_xp, outputs past a sequence's end are zero, ``h_n``
  holds each sequence's state at its own last step and the reverse direction starts at each sequence's own end.
- ``batch_first``: ``Transpose`` nodes at the entry and the exit. The ``RNN`` operator's own ``layout=1`` (opset
  14) is not used: ONNX Runtime refuses it.
- Dropout is not in the graph: an exported model is for inference, as ``model.eval()``.
- float32 only: ONNX Runtime has no float64 kernel for the ``RNN`` operator, so a float64 model is refused.

Inputs and outputs; ``T`` and ``B`` are symbolic (any sequence length and batch), the rest fixed. Shapes are
time-major as written, (B, T, ...) where the RNN is ``batch_first``; ``h0`` and ``h_n`` never are.

======================  ===============================  =======================================================
name                    dtype, shape                     when
======================  ===============================  =======================================================
``x``                   float32 (T, B, input_size)       always, except with an embedding
``tokens``              int64 (T, B)                     a SequenceModel with an embedding
``h0``                  float32 (L*D, B, H)              ``with_h0=True``
``lengths``             int64 (B,), each in [1, T]       ``with_lengths=True``
``out``                 float32 (T, B, D*H)              output of an RNN
``logits``              float32 (T, B, out) or (B, out)  output of a SequenceModel (many-to-many, many-to-one)
``h_n``                 float32 (L*D, B, H)              output, always
======================  ===============================  =======================================================

Examples
--------
Train a small classifier (is the sum of a sequence's first feature positive?) for 20 Adam steps, export it, and
run it in ONNX Runtime, which gives the model's logits:

>>> import os, tempfile
>>> import numpy as np, onnxruntime
>>> from rnn_xp import RNN
>>> from rnn_xp.onnx import export
>>> from rnn_xp.training import (Adam, Linear, SequenceModel, softmax_cross_entropy,
...                              softmax_cross_entropy_backward)
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((64, 12, 3)).astype(np.float32)              # (B, T, features)
>>> lengths = rng.integers(4, 13, size=64)
>>> labels = np.array([x[i, :n, 0].sum() > 0 for i, n in enumerate(lengths)], dtype=np.int64)
>>> model = SequenceModel(RNN(3, 16, batch_first=True, seed=0), Linear(16, 2, seed=1), many_to_one=True)
>>> optimizer = Adam(lr=1e-2)
>>> for step in range(20):
...     logits, _ = model(x, lengths=lengths)
...     loss, cache = softmax_cross_entropy(logits, labels)
...     model.backward(softmax_cross_entropy_backward(cache))
...     model.set_parameters(optimizer.step(model.parameters(), model.grads))
>>> path = os.path.join(tempfile.mkdtemp(), "classifier.onnx")
>>> _ = export(model, path, with_lengths=True)
>>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
>>> onnx_logits = session.run(["logits"], {"x": x, "lengths": lengths})[0]
>>> logits, _ = model(x, lengths=lengths)
>>> onnx_logits.shape, bool(np.max(np.abs(onnx_logits - logits)) < 1e-5)
((64, 2), True)
>>> bool(np.mean(np.argmax(onnx_logits, axis=1) == labels) > 0.85)      # trained: 0.5 is chance
True
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from rnn_xp import __version__
from rnn_xp._arrays import to_numpy
from rnn_xp._checks import check_bool
from rnn_xp.layer import RNN

if TYPE_CHECKING:
    import onnx

OPSET = 14
_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def export(model: Any, path: str | os.PathLike[str] | BinaryIO, *, with_lengths: bool = False,
           with_h0: bool = False) -> onnx.ModelProto:
    """Write ``model`` as an ONNX model to ``path`` (see the module's docstring for the graph and its names).

    Parameters
    ----------
    model : RNN or rnn_xp.training.SequenceModel
        float32, on any device. A SequenceModel's logits are the head's for every step (many-to-many) or of the
        last layer's state at each sequence's own last step, both directions concatenated (``many_to_one``).
    path : str, os.PathLike, or a binary file object with ``write``
        Where the serialized model goes.
    with_lengths : bool
        The graph takes ``lengths`` (B,) int64, each sequence's length in [1, T]; without it every sequence is T
        long.
    with_h0 : bool
        The graph takes ``h0`` (num_layers*D, B, hidden_size); without it the initial state is zero.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    TypeError
        ``model`` is not an RNN or a SequenceModel, or is not float32; ``path`` is not a path or binary file;
        ``with_lengths`` or ``with_h0`` is not a bool.
    ValueError
        A SequenceModel whose head or embedding does not fit its RNN.
    ImportError
        The ``onnx`` package is not installed.

    Examples
    --------
    >>> import io, rnn_xp
    >>> from rnn_xp.onnx import export
    >>> proto = export(rnn_xp.RNN(3, 4, num_layers=2, seed=0), io.BytesIO(), with_lengths=True)
    >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    (['x', 'lengths'], ['out', 'h_n'])
    """
    parts = _parts(model)
    with_lengths = check_bool(with_lengths, "with_lengths")
    with_h0 = check_bool(with_h0, "with_h0")
    if not isinstance(path, str | os.PathLike) and not callable(getattr(path, "write", None)):
        msg = f"path must be a str, an os.PathLike or a binary file object; got {type(path).__name__}"
        raise TypeError(msg)
    proto = _build(*parts, with_lengths=with_lengths, with_h0=with_h0)
    data = proto.SerializeToString()
    if isinstance(path, str | os.PathLike):
        with open(path, "wb") as file:
            file.write(data)
    else:
        path.write(data)
    return proto


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        msg = f"rnn_xp.onnx.export needs the onnx package: pip install onnx ({error})"
        raise ImportError(msg) from error
    return onnx


def _parts(model: Any) -> tuple[RNN, dict[str, np.ndarray], dict[str, np.ndarray], bool]:
    """(rnn, head params, embedding params, many_to_one), the last two as host arrays, every check done."""
    if isinstance(model, RNN):
        rnn, head, embedding, many_to_one = model, {}, {}, False
    else:
        from rnn_xp.training.models import SequenceModel

        if not isinstance(model, SequenceModel):
            msg = f"model must be an rnn_xp.RNN or an rnn_xp.training.SequenceModel; got {type(model).__name__}"
            raise TypeError(msg)
        rnn, many_to_one = model.rnn, model.many_to_one
        head = {f"head.{name}": to_numpy(value) for name, value in model.head.params.items()}
        embedding = {} if model.embedding is None else {"embedding.weight": to_numpy(model.embedding.params["weight"])}
    dtypes = {"rnn": np.dtype(rnn.dtype)} | {name: value.dtype for name, value in (head | embedding).items()}
    for name, dtype in dtypes.items():
        if dtype != np.float32:
            msg = (f"model must be float32 to export (ONNX Runtime has no float64 RNN kernel); got {name} of dtype "
                   f"{dtype}: build a float32 model and load the parameters converted to float32")
            raise TypeError(msg)
    features = (2 if rnn.bidirectional else 1) * rnn.hidden_size
    if head and head["head.weight"].shape[1] != features:
        msg = (f"model.head must take {features} features (the RNN's num_directions*hidden_size); got a weight of "
               f"shape {head['head.weight'].shape}")
        raise ValueError(msg)
    if embedding and embedding["embedding.weight"].shape[1] != rnn.input_size:
        msg = (f"model.embedding must give {rnn.input_size} features (the RNN's input_size); got a weight of shape "
               f"{embedding['embedding.weight'].shape}")
        raise ValueError(msg)
    return rnn, head, embedding, many_to_one


def _build(rnn: RNN, head: dict[str, np.ndarray], embedding: dict[str, np.ndarray], many_to_one: bool, *,
           with_lengths: bool, with_h0: bool) -> onnx.ModelProto:
    onnx = _import_onnx()
    helper, float32, int64 = onnx.helper, onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    layers, hidden = rnn.num_layers, rnn.hidden_size
    directions = 2 if rnn.bidirectional else 1
    suffixes = ("", "_reverse")[:directions]
    params = {name: to_numpy(value) for name, value in rnn.parameters().items()}
    outer = ["B", "T"] if rnn.batch_first else ["T", "B"]
    inputs, nodes, initializers = [], [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, node_inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, node_inputs, [output], **attributes))
        return output

    def int64s(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    if embedding:
        inputs.append(helper.make_tensor_value_info("tokens", int64, outer))
        layer_input = node("Gather", [constant("embedding.weight", embedding["embedding.weight"]), "tokens"],
                           "features", axis=0)
    else:
        inputs.append(helper.make_tensor_value_info("x", float32, [*outer, rnn.input_size]))
        layer_input = "x"
    if rnn.batch_first:
        layer_input = node("Transpose", [layer_input], "x_time_major", perm=[1, 0, 2])
    sequence_lens = ""
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", int64, ["B"]))
        sequence_lens = node("Cast", ["lengths"], "sequence_lens", to=onnx.TensorProto.INT32)
    if with_h0:
        inputs.append(helper.make_tensor_value_info("h0", float32, [layers * directions, "B", hidden]))
    # The top layer's (T, B, D*H) is the graph's "out" itself when nothing follows it.
    time_major_out = "out" if not head and not rnn.batch_first else "out_time_major"

    states = []
    for layer in range(layers):

        def stacked(kind: str, layer: int = layer) -> np.ndarray:
            return np.stack([params[f"{kind}_l{layer}{suffix}"] for suffix in suffixes])

        bias = ""
        if rnn.bias:
            bias = constant(f"B_l{layer}", np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1))
        initial_h = ""
        if with_h0:
            bounds = [constant(f"h0_{edge}_l{layer}", int64s(value))
                      for edge, value in (("start", layer * directions), ("end", (layer + 1) * directions))]
            initial_h = node("Slice", ["h0", *bounds], f"h0_l{layer}")
        top = layer == layers - 1
        state = "h_n" if layers == 1 else f"h_n_l{layer}"
        # many-to-one reads only the top layer's last state: that node need not output Y.
        y = "" if many_to_one and top else f"y_l{layer}"
        nodes.append(helper.make_node(
            "RNN",
            [layer_input, constant(f"W_l{layer}", stacked("weight_ih")), constant(f"R_l{layer}", stacked("weight_hh")),
             bias, sequence_lens, initial_h],
            [y, state], name=f"rnn_l{layer}", hidden_size=hidden,
            activations=[_ACTIVATIONS[rnn.nonlinearity]] * directions,
            direction="bidirectional" if directions == 2 else "forward",
        ))
        states.append(state)
        if y:
            # Y (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H): the directions side by side, forward first.
            by_batch = node("Transpose", [y], f"y_t_l{layer}", perm=[0, 2, 1, 3])
            layer_input = node("Reshape", [by_batch, constant(f"shape_l{layer}", int64s(0, 0, -1))],
                               time_major_out if top else f"out_l{layer}")
    if layers > 1:
        node("Concat", states, "h_n", axis=0)

    if many_to_one:
        # Y_h (D, B, H) -> (B, D, H) -> (B, D*H): forward then reverse, as SequenceModel concatenates them.
        last = node("Transpose", [states[-1]], "last_t", perm=[1, 0, 2])
        rnn_out = node("Reshape", [last, constant("shape_last", int64s(0, -1))], "last")
    elif rnn.batch_first:
        rnn_out = node("Transpose", [layer_input], "out_batch_first" if head else "out", perm=[1, 0, 2])
    else:
        rnn_out = layer_input
    if head:
        with_bias = "head.bias" in head
        logits = node("MatMul", [rnn_out, constant("head.weight_t", head["head.weight"].T)],
                      "logits_no_bias" if with_bias else "logits")
        if with_bias:
            node("Add", [logits, constant("head.bias", head["head.bias"])], "logits")
        out_features = head["head.weight"].shape[0]
        output = helper.make_tensor_value_info("logits", float32, ["B", out_features] if many_to_one
                                               else [*outer, out_features])
    else:
        output = helper.make_tensor_value_info("out", float32, [*outer, directions * hidden])
    outputs = [output, helper.make_tensor_value_info("h_n", float32, [layers * directions, "B", hidden])]

    graph = helper.make_graph(nodes, "rnn_xp", inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets),
                             producer_name="rnn_xp", producer_version=__version__)
