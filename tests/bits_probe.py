"""Run a fixed set of public calls and print the SHA-256 of every result's bytes, one JSON object (for
tests/test_predictable.py, which runs this in separate processes and compares the digests).

    python tests/bits_probe.py [--warm] [--dask]

``--warm``: first make unrelated calls (other shapes, dtypes, loops, threads), which must change nothing.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
import threading
from typing import Any

import numpy as np

import rnn_xp
from rnn_xp.functional import rnn_backward, rnn_forward

# (T, B, I, H, layers, bidirectional, lengths, dtype): one-sample and small batches (the compiled loop under the fixed
# rule), larger batches (the NumPy loop), both directions, padding, float64.
CASES = [
    (40, 1, 8, 128, 1, False, False, "float32"),
    (30, 4, 8, 64, 2, True, True, "float32"),
    (20, 64, 16, 128, 1, False, False, "float32"),
    (25, 33, 8, 48, 2, True, True, "float32"),
    (20, 3, 8, 40, 1, False, True, "float64"),
    (15, 70, 8, 64, 1, True, False, "float64"),
]


def _digest(arrays: list[Any]) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        host = np.ascontiguousarray(np.asarray(array))
        hasher.update(str((host.dtype, host.shape)).encode())
        hasher.update(host.tobytes())
    return hasher.hexdigest()


def _inputs(case: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    steps, batch, inputs, hidden, _, bidirectional, with_lengths, dtype = case
    rng = np.random.default_rng(sum(case[:4]))
    x = rng.standard_normal((steps, batch, inputs)).astype(dtype)
    grad_out = rng.standard_normal((steps, batch, (2 if bidirectional else 1) * hidden)).astype(dtype)
    lengths = rng.integers(1, steps + 1, batch) if with_lengths else None
    return x, grad_out, lengths


def layer_calls() -> dict[str, str]:
    """RNN forward + backward; rnn_forward on its state_dict, on a pickled and on a deep-copied layer."""
    digests = {}
    for case in CASES:
        _, _, inputs, hidden, layers, bidirectional, _, dtype = case
        x, grad_out, lengths = _inputs(case)
        rnn = rnn_xp.RNN(inputs, hidden, num_layers=layers, bidirectional=bidirectional, dtype=dtype, seed=1)
        rnn.eval()
        out, h_n = rnn(x, lengths=lengths)
        grad_x, grad_h0 = rnn.backward(grad_out)
        results = [out, h_n, grad_x, grad_h0, *rnn.grads.values()]
        digests[f"layer-{case}"] = _digest(results)
        functional_out, functional_h_n, cache = rnn_forward(x, rnn.state_dict(), lengths=lengths)
        functional_grads = rnn_backward(cache, grad_out)
        digests[f"functional-{case}"] = _digest([functional_out, functional_h_n, functional_grads[0],
                                                 functional_grads[1], *functional_grads[2].values()])
        for name, twin in (("pickle", pickle.loads(pickle.dumps(rnn))), ("deepcopy", copy.deepcopy(rnn))):
            twin_out, twin_h_n = twin(x, lengths=lengths)
            twin_grads = twin.backward(grad_out)
            digests[f"{name}-{case}"] = _digest([twin_out, twin_h_n, *twin_grads, *twin.grads.values()])
    return digests


def training_steps() -> dict[str, str]:
    """Five Adam steps of a many-to-one classifier, with dropout between two layers (seeded)."""
    from rnn_xp.training import Adam, Linear, SequenceModel, clip_grad_norm
    from rnn_xp.training.losses import softmax_cross_entropy, softmax_cross_entropy_backward

    rng = np.random.default_rng(5)
    model = SequenceModel(rnn_xp.RNN(6, 32, num_layers=2, dropout=0.25, seed=2), Linear(32, 3, seed=3),
                          many_to_one=True)
    optimizer = Adam(lr=1e-2)
    x = rng.standard_normal((12, 16, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    losses = []
    for _ in range(5):
        logits, _ = model(x)
        loss, cache = softmax_cross_entropy(logits, labels)
        model.backward(softmax_cross_entropy_backward(cache))
        grads, _ = clip_grad_norm(model.grads, 1.0)
        model.set_parameters(optimizer.step(model.parameters(), grads))
        losses.append(np.asarray(loss))
    return {"training": _digest([*losses, *model.parameters().values()])}


def dask_forward() -> dict[str, str]:
    """rnn_xp.dask over four batch chunks, computed on threads."""
    import dask
    import dask.array as da

    from rnn_xp.dask import rnn_forward as dask_rnn_forward

    params = rnn_xp.RNN(8, 64, seed=4).state_dict()
    x = np.random.default_rng(6).standard_normal((30, 40, 8)).astype(np.float32)
    out, h_n = dask_rnn_forward(da.from_array(x, chunks=(30, 10, 8)), params)
    with dask.config.set(scheduler="threads"):
        computed = dask.compute(out, h_n)
    return {"dask": _digest(list(computed))}


def warm_up() -> None:
    """Unrelated calls: other shapes, both dtypes, forced loops, two threads at once, a failed call."""
    rng = np.random.default_rng(99)
    for batch, hidden, dtype, loop in ((2, 512, "float32", "auto"), (128, 32, "float64", "numpy"),
                                       (5, 100, "float32", "compiled"), (9, 16, "float32", "generic")):
        rnn = rnn_xp.RNN(7, hidden, dtype=dtype, seed=int(rng.integers(100)), loop=loop)
        out, _ = rnn(rng.standard_normal((11, batch, 7)).astype(dtype))
        rnn.backward(np.ones_like(out))

    def busy() -> None:
        rnn = rnn_xp.RNN(3, 64, bidirectional=True, seed=7)
        for _ in range(5):
            rnn(np.ones((20, 8, 3), dtype=np.float32))

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        rnn_xp.RNN(3, 4)(np.ones((5, 2, 4), dtype=np.float32))
    except ValueError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--dask", action="store_true")
    args = parser.parse_args()
    if args.warm:
        warm_up()
    digests = {**layer_calls(), **training_steps()}
    if args.dask:
        digests.update(dask_forward())
    print(json.dumps(digests, sort_keys=True))


if __name__ == "__main__":
    main()
