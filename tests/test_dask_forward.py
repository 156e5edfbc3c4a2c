"""rnn_xp.dask.rnn_forward on a LocalCluster of two worker processes: equal to the single-process functional forward
(float64, 1e-12), lazy, the parameters one key of the graph, every bad input refused with its name."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="rnn_xp.dask needs dask[array]: pip install 'dask[array]'")
pytest.importorskip("distributed", reason="rnn_xp.dask needs distributed: pip install distributed")

import dask.array as da
from distributed import wait
from helpers import assert_close

import rnn_xp
from rnn_xp.dask import rnn_forward
from rnn_xp.dask.forward import PARAMS_KEY_PREFIX
from rnn_xp.functional import rnn_forward as single_process_forward

TIMEOUT_S = 120


def _params(layers: int = 1, bidirectional: bool = False, nonlinearity: str = "tanh", hidden: int = 5,
            input_size: int = 3) -> dict[str, Any]:
    rnn = rnn_xp.RNN(input_size, hidden, num_layers=layers, bidirectional=bidirectional, nonlinearity=nonlinearity,
                     dtype="float64", seed=3)
    return rnn.state_dict()


def _compute(client: Any, *arrays: Any) -> list[np.ndarray]:
    futures = client.compute(list(arrays))
    wait(futures, timeout=TIMEOUT_S)
    return list(client.gather(futures))


CASES = {
    # name: (layers, bidirectional, nonlinearity, batch_first, batch chunks, h0 as, lengths as)
    "2 layers, bidirectional, dask lengths and h0": (2, True, "tanh", False, (3, 4), "dask", "dask"),
    "batch_first, relu, numpy lengths and h0, uneven chunks": (1, False, "relu", True, (1, 4, 2), "numpy", "numpy"),
    "3 layers, no h0, no lengths, one chunk each": (3, False, "tanh", False, (1,) * 7, None, None),
    "bidirectional, h0 and lengths chunked otherwise than x": (1, True, "tanh", False, (2, 5), "dask-other", "dask-other"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_the_single_process_forward(dask_client: Any, case: str) -> None:
    layers, bidirectional, nonlinearity, batch_first, chunks, h0_as, lengths_as = CASES[case]
    params = _params(layers, bidirectional, nonlinearity)
    rng = np.random.default_rng(1)
    steps, batch, directions = 6, sum(chunks), 2 if bidirectional else 1
    x = rng.standard_normal((batch, steps, 3) if batch_first else (steps, batch, 3))
    h0 = rng.standard_normal((layers * directions, batch, 5)) if h0_as else None
    lengths = rng.integers(1, steps + 1, size=batch) if lengths_as else None
    dx = da.from_array(x, chunks=(chunks, steps, 3) if batch_first else (steps, chunks, 3))
    dh0: Any = h0
    dlengths: Any = lengths
    if h0_as == "dask":
        dh0 = da.from_array(h0, chunks=(layers * directions, chunks, 5))
    if lengths_as == "dask":
        dlengths = da.from_array(lengths, chunks=(chunks,))
    if h0_as == "dask-other":
        dh0 = da.from_array(h0, chunks=(1, 3, 2))
    if lengths_as == "dask-other":
        dlengths = da.from_array(lengths, chunks=(4,))

    out, h_n = rnn_forward(dx, params, dh0, lengths=dlengths, nonlinearity=nonlinearity, batch_first=batch_first)

    assert isinstance(out, da.Array) and isinstance(h_n, da.Array)  # lazy
    assert out.chunks[0 if batch_first else 1] == chunks and h_n.chunks == ((layers * directions,), chunks, (5,))
    want_out, want_h_n, _ = single_process_forward(x, params, h0, lengths=lengths, nonlinearity=nonlinearity,
                                                   batch_first=batch_first)
    got_out, got_h_n = _compute(dask_client, out, h_n)
    assert_close(got_out, want_out, rtol=1e-12, dtype=np.float64)
    assert_close(got_h_n, want_h_n, rtol=1e-12, dtype=np.float64)


def test_chunks_run_on_both_worker_processes(dask_client: Any) -> None:
    params = _params()
    x = da.from_array(np.random.default_rng(2).standard_normal((4, 8, 3)), chunks=(4, 2, 3))
    out, _ = rnn_forward(x, params)
    persisted = dask_client.persist(out)
    wait(persisted, timeout=TIMEOUT_S)
    holders = dask_client.who_has(persisted)
    workers = {worker for held in holders.values() for worker in held}
    pids = dask_client.run(lambda: __import__("os").getpid())
    assert len(workers) == 2 and len(set(pids.values())) == 2


def test_unbatched_sequence(dask_client: Any) -> None:
    params = _params(layers=2, bidirectional=True)
    rng = np.random.default_rng(4)
    x, h0 = rng.standard_normal((6, 3)), rng.standard_normal((4, 5))
    out, h_n = rnn_forward(da.from_array(x), params, h0)
    want_out, want_h_n, _ = single_process_forward(x, params, h0)
    got_out, got_h_n = _compute(dask_client, out, h_n)
    assert got_out.shape == (6, 10) and got_h_n.shape == (4, 5)
    assert_close(got_out, want_out, rtol=1e-12)
    assert_close(got_h_n, want_h_n, rtol=1e-12)


def test_the_parameters_are_one_key_of_the_graph() -> None:
    params = _params(layers=2, hidden=48)  # ~50 kB of parameters against 2 kB of data
    param_bytes = sum(v.nbytes for v in params.values())
    x = np.random.default_rng(5).standard_normal((3, 16, 3))
    out, h_n = rnn_forward(da.from_array(x, chunks=(3, 2, 3)), params)  # 8 chunks
    graph = dict(out.__dask_graph__())
    graph.update(h_n.__dask_graph__())
    param_keys = [k for k in graph if str(k).startswith(PARAMS_KEY_PREFIX)]
    assert len(param_keys) == 1
    # One copy in the whole graph: embedding them in each of the 8 chunks' tasks would make it 8 times larger.
    assert len(pickle.dumps(graph)) < 1.5 * param_bytes + 10 * x.nbytes
    assert sum(1 for task in graph.values() if param_keys[0] in getattr(task, "dependencies", ())) == 8


def test_x_split_along_time_or_features_is_refused_with_how_to_rechunk() -> None:
    params = _params()
    x = da.zeros((6, 4, 3), chunks=(3, 2, 3))
    with pytest.raises(ValueError, match=r"split along time \(axis 0: \(3, 3\)\).*x = x\.rechunk\(\{0: -1\}\)"):
        rnn_forward(x, params)
    x = da.zeros((4, 6, 3), chunks=(2, 6, 1))
    with pytest.raises(ValueError, match=r"features \(axis 2.*x\.rechunk\(\{2: -1\}\)"):
        rnn_forward(x, params, batch_first=True)


def _bad_calls() -> list[tuple[str, Any, str, type[Exception]]]:
    params = _params()
    x = da.zeros((4, 6, 3), chunks=(4, 3, 3))
    ok = {"x": x, "params": params}
    return [
        ("numpy x", {**ok, "x": np.zeros((4, 6, 3))}, "x must be a dask array", TypeError),
        ("float32 x", {**ok, "x": x.astype(np.float32)}, "x must have dtype float64", TypeError),
        ("input size", {**ok, "x": da.zeros((4, 6, 2), chunks=(4, 3, 2))}, "input_size=3", ValueError),
        ("4-D x", {**ok, "x": da.zeros((4, 6, 1, 3))}, "x must be 3-D", ValueError),
        ("no steps", {**ok, "x": da.zeros((0, 6, 3))}, "at least one time step", ValueError),
        ("unknown chunks", {**ok, "x": x[da.from_array(np.ones(4, bool))]}, "unknown chunk sizes", ValueError),
        ("params", {**ok, "params": {"weight_ih_l0": params["weight_ih_l0"]}}, "params is missing", ValueError),
        ("h0 shape", {**ok, "h0": np.zeros((2, 6, 5))}, r"h0 must have shape \(1, 6, 5\)", ValueError),
        ("h0 dtype", {**ok, "h0": np.zeros((1, 6, 5), np.float32)}, "h0 must have dtype float64", TypeError),
        ("lengths range", {**ok, "lengths": [1, 2, 3, 4, 5, 6]}, r"lengths must lie in \[1, T=4\]", ValueError),
        ("lengths shape", {**ok, "lengths": da.ones(5, dtype=int)}, r"lengths must have shape \(6,\)", ValueError),
        ("lengths dtype", {**ok, "lengths": da.ones(6)}, "lengths must hold integers", TypeError),
        ("unbatched lengths", {**ok, "x": da.zeros((4, 3)), "lengths": [1]}, "lengths must be None", ValueError),
        ("nonlinearity", {**ok, "nonlinearity": "sigmoid"}, "nonlinearity", ValueError),
    ]


@pytest.mark.parametrize("case", _bad_calls(), ids=lambda case: case[0])
def test_bad_inputs_are_refused_naming_the_argument(case: tuple[str, Any, str, type[Exception]]) -> None:
    _, kwargs, message, error = case
    kwargs = dict(kwargs)
    x, params = kwargs.pop("x"), kwargs.pop("params")
    h0 = kwargs.pop("h0", None)
    with pytest.raises(error, match=message):
        rnn_forward(x, params, h0, **kwargs)


def test_dask_lengths_out_of_range_fail_when_computed(dask_client: Any) -> None:
    params = _params()
    x = da.zeros((4, 6, 3), chunks=(4, 3, 3))
    out, _ = rnn_forward(x, params, lengths=da.from_array(np.array([1, 2, 3, 4, 5, 4]), chunks=3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\]"):
        _compute(dask_client, out)


def test_chunks_of_another_array_type_than_the_parameters_are_refused() -> None:
    torch = pytest.importorskip("torch")
    params = {name: torch.from_numpy(value) for name, value in _params().items()}
    with pytest.raises(TypeError, match="x's chunks must be arrays of the parameters' type"):
        rnn_forward(da.zeros((4, 6, 3), chunks=(4, 3, 3)), params)
