"""rnn_xp.dask.DataParallel on a LocalCluster of two worker processes: one step over uneven shards equals one
single-process step on the whole batch (float64, 1e-12), and truncated BPTT with the carried state kept on the
workers equals the single-process charlm trainer chunk for chunk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="rnn_xp.dask needs dask[array]: pip install 'dask[array]'")
pytest.importorskip("distributed", reason="rnn_xp.dask needs distributed: pip install distributed")

import dask.array as da
from helpers import assert_close

import rnn_xp
from rnn_xp.dask import DataParallel
from rnn_xp.training import (
    SGD,
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
from rnn_xp.training.charlm import CharLMConfig, CharLMTrainer, Corpus
from rnn_xp.training.data import CharVocabulary, DocumentStreams

VOCABULARY, STEPS = 7, 6
TIMEOUT_S = 120


def _language_model(batch_first: bool = False) -> SequenceModel:
    return SequenceModel(
        rnn_xp.RNN(4, 8, num_layers=2, batch_first=batch_first, dtype="float64", seed=0),
        Linear(8, VOCABULARY, dtype="float64", seed=1),
        embedding=Embedding(VOCABULARY, 4, dtype="float64", seed=2),
    )


def _cross_entropy_gradients(model: SequenceModel, tokens: np.ndarray, targets: np.ndarray,
                             lengths: np.ndarray, batch_first: bool) -> tuple[float, dict[str, Any]]:
    """The single-process loss and gradients of the whole batch, as the charlm example computes them."""
    logits, _ = model(tokens, None, lengths)
    steps = tokens.shape[1] if batch_first else tokens.shape[0]
    inside = np.arange(steps)[:, None] < lengths[None, :]
    mask = (inside.T if batch_first else inside).reshape(-1)
    loss, cache = softmax_cross_entropy(logits.reshape(-1, VOCABULARY), targets.reshape(-1), mask)
    model.backward(softmax_cross_entropy_backward(cache).reshape(logits.shape))
    return float(loss), model.grads


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
def test_one_step_over_uneven_shards_equals_one_single_process_step(dask_client: Any, batch_first: bool) -> None:
    rng = np.random.default_rng(0)
    batch, chunks = 8, (5, 3)
    shape = (batch, STEPS) if batch_first else (STEPS, batch)
    tokens, targets = rng.integers(0, VOCABULARY, shape), rng.integers(0, VOCABULARY, shape)
    # Uneven padding too: the first shard's sequences are short, the second's long.
    lengths = np.array([1, 2, 1, 3, 2, 6, 5, 6])

    single = _language_model(batch_first)
    loss, grads = _cross_entropy_gradients(single, tokens, targets, lengths, batch_first)
    clipped, _ = clip_grad_norm(grads, 0.5)
    single.set_parameters(Adam(lr=0.01).step(single.parameters(), clipped))

    model = _language_model(batch_first)
    trainer = DataParallel(model, Adam(lr=0.01), loss="cross_entropy", clip_norm=0.5, client=dask_client, timeout_s=TIMEOUT_S)
    sharded = da.from_array(tokens, chunks=(chunks, STEPS) if batch_first else (STEPS, chunks))
    got_loss = trainer.step(sharded, targets, lengths=da.from_array(lengths, chunks=(chunks,)))

    assert got_loss == pytest.approx(loss, rel=1e-12)
    for name, value in single.parameters().items():
        assert_close(model.parameters()[name], value, rtol=1e-12)
    # The weighting matters here: the plain mean of the two shards' mean gradients is another gradient.
    means = []
    for rows in (slice(0, 5), slice(5, 8)):
        part = _language_model(batch_first)
        pick = (lambda a, rows=rows: a[rows]) if batch_first else (lambda a, rows=rows: a[:, rows])
        means.append(_cross_entropy_gradients(part, pick(tokens), pick(targets), lengths[rows], batch_first)[1])
    naive = (means[0]["rnn.weight_hh_l0"] + means[1]["rnn.weight_hh_l0"]) / 2
    assert np.abs(naive - grads["rnn.weight_hh_l0"]).max() > 1e-3 * np.abs(grads["rnn.weight_hh_l0"]).max()


def test_mse_step_of_a_keras_style_layer_over_three_shards_on_two_workers(dask_client: Any) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, STEPS, 3)), rng.standard_normal((7, 4))

    single = SimpleRNN(3, 4, dtype="float64", seed=5)
    prediction = single(x)
    _, cache = mse(prediction, y)
    single.backward(mse_backward(cache))
    optimizer = SGD(lr=0.1, momentum=0.9)
    single.set_parameters(optimizer.step(single.parameters(), single.grads))

    model = SimpleRNN(3, 4, dtype="float64", seed=5)
    trainer = DataParallel(model, SGD(lr=0.1, momentum=0.9), loss="mse", client=dask_client, timeout_s=TIMEOUT_S)
    trainer.step(da.from_array(x, chunks=((2, 4, 1), STEPS, 3)), da.from_array(y, chunks=((3, 4), 4)))
    for name, value in single.parameters().items():
        assert_close(model.parameters()[name], value, rtol=1e-12)


def _documents(rng: np.random.Generator, vocabulary: CharVocabulary) -> list[np.ndarray]:
    """Documents of 3 to 20 characters: most end inside a chunk of 6 steps, so lengths < T and resets happen."""
    characters = vocabulary.characters
    texts = ["".join(rng.choice(list(characters), size=int(n))) for n in rng.integers(3, 21, size=30)]
    return [vocabulary.encode(t) for t in texts]


def test_truncated_bptt_with_states_on_the_workers_equals_the_single_process_trainer(dask_client: Any) -> None:
    vocabulary = CharVocabulary("abcdefg?")
    documents = _documents(np.random.default_rng(2), vocabulary)
    config = CharLMConfig(embedding=4, hidden=6, layers=2, steps=STEPS, batch=5, lr=0.01, clip=0.3,
                          sampler="streams", dtype="float64", seed=3)
    single = CharLMTrainer(config, Corpus(vocabulary, documents, documents[:2]))

    model = CharLMTrainer(config, Corpus(vocabulary, documents, documents[:2])).model  # same initial weights
    trainer = DataParallel(model, Adam(lr=config.lr), loss="cross_entropy", clip_norm=config.clip,
                           client=dask_client, timeout_s=TIMEOUT_S)
    streams = DocumentStreams(documents, steps=STEPS, batch=5, seed=config.seed)  # the same chunks as `single`
    saw_short = saw_reset = False
    for _ in range(5):
        chunk = streams.next_chunk()
        saw_short |= bool(chunk.lengths.min() < STEPS)
        saw_reset |= bool(chunk.reset.any() and not chunk.reset.all())
        want = single.update()
        got = trainer.stream_step(da.from_array(chunk.inputs, chunks=(STEPS, (3, 2))), chunk.targets,
                                  lengths=chunk.lengths, reset=chunk.reset)
        assert got == pytest.approx(want, rel=1e-12)
    assert saw_short and saw_reset  # the chunks exercised padding and per-stream resets

    for name, value in single.model.parameters().items():
        assert_close(model.parameters()[name], value, rtol=1e-12)
    states = trainer.carried_states()
    assert_close(np.concatenate(states, axis=1), single.state, rtol=1e-12)
    locations = trainer.state_locations()  # each shard's state stays on its own worker
    assert [len(held) for held in locations] == [1, 1] and locations[0] != locations[1]


def test_stream_step_keeps_the_first_chunks(dask_client: Any) -> None:
    trainer = DataParallel(_language_model(), SGD(lr=0.1), client=dask_client, timeout_s=TIMEOUT_S)
    tokens = np.zeros((STEPS, 5), dtype=np.int64)
    trainer.stream_step(da.from_array(tokens, chunks=(STEPS, (3, 2))), tokens)
    with pytest.raises(ValueError, match=r"keep the batch chunks of the first stream step \(3, 2\)"):
        trainer.stream_step(da.from_array(tokens, chunks=(STEPS, (2, 3))), tokens)
    trainer.reset_streams()
    trainer.stream_step(da.from_array(tokens, chunks=(STEPS, (2, 3))), tokens)


def test_each_trainer_finds_every_worker_while_the_client_refreshes_its_cached_view(dask_client: Any) -> None:
    # distributed's Client refreshes scheduler_info() on a timer with a copy that lists no workers; a trainer that
    # read it raced that timer ("the Dask cluster has no workers" on a CI run). A 5 ms timer makes the race common.
    import dask
    import distributed

    with dask.config.set({"distributed.client.scheduler-info-interval": "5ms"}), \
            distributed.Client(dask_client.cluster, timeout="60s") as client:
        found = [len(DataParallel(_language_model(), SGD(lr=0.1), client=client)._worker_list()) for _ in range(200)]
    assert found == [2] * 200


def test_bad_arguments_are_refused_naming_them(dask_client: Any) -> None:
    model = _language_model()
    tokens = da.zeros((STEPS, 4), dtype=np.int64, chunks=(STEPS, 2))
    with pytest.raises(TypeError, match=r"model must be an rnn_xp\.training SequenceModel"):
        DataParallel(rnn_xp.RNN(3, 4), SGD(lr=0.1), client=dask_client)
    with pytest.raises(TypeError, match="optimizer must be"):
        DataParallel(model, "adam", client=dask_client)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss must be one of"):
        DataParallel(model, SGD(lr=0.1), loss="hinge", client=dask_client)
    with pytest.raises(ValueError, match="clip_norm must be"):
        DataParallel(model, SGD(lr=0.1), clip_norm=0.0, client=dask_client)
    dropping = SequenceModel(rnn_xp.RNN(4, 8, num_layers=2, dropout=0.5, dtype="float64"),
                             Linear(8, VOCABULARY, dtype="float64"), embedding=Embedding(VOCABULARY, 4, dtype="float64"))
    with pytest.raises(ValueError, match=r"dropout=0\.5 in training mode"):
        DataParallel(dropping, SGD(lr=0.1), client=dask_client)
    trainer = DataParallel(model, SGD(lr=0.1), client=dask_client, timeout_s=TIMEOUT_S)
    with pytest.raises(TypeError, match="inputs must be a dask array"):
        trainer.step(np.zeros((STEPS, 4), dtype=np.int64), np.zeros((STEPS, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"chunked along the batch axis 1 only.*inputs.rechunk\(\{0: -1\}\)"):
        trainer.step(da.zeros((STEPS, 4), dtype=np.int64, chunks=(3, 2)), np.zeros((STEPS, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"targets must have the batch \(4\) on axis 1"):
        trainer.step(tokens, np.zeros((STEPS, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"lengths must have shape \(4,\)"):
        trainer.step(tokens, np.zeros((STEPS, 4), dtype=np.int64), lengths=np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="targets must be a dask or NumPy array"):
        trainer.step(tokens, [[0] * 4] * STEPS)
    keras = DataParallel(SimpleRNN(3, 4, dtype="float64"), SGD(lr=0.1), loss="mse", client=dask_client, timeout_s=TIMEOUT_S)
    with pytest.raises(TypeError, match="stream_step needs a SequenceModel"):
        keras.stream_step(da.zeros((4, STEPS, 3), chunks=(2, STEPS, 3)), np.zeros((4, 4)))


def test_the_documented_example_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    """The first example of docs/dask.md, run as the script a user would save (its own local cluster)."""
    root = Path(__file__).resolve().parent.parent
    section = (root / "docs" / "dask.md").read_text().split("\n## ", 1)[0]
    code, printed = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.DOTALL)[:2]
    script = tmp_path / "example.py"
    script.write_text(code)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=environment, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == printed
