"""Data streams, checkpoints, truncated-BPTT state carry, resume, sampling, and short training runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close

import rnn_xp
from rnn_xp.training.adding import AddingConfig, adding_batch
from rnn_xp.training.adding import train as train_adding
from rnn_xp.training.charlm import CharLMConfig, CharLMTrainer, load_corpus, sample
from rnn_xp.training.checkpoint import CheckpointError, load_checkpoint, load_safetensors, save_safetensors
from rnn_xp.training.data import CharVocabulary, DocumentStreams, Shuffler, split_held_out, stdlib_sources

TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(400))


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def _config(text_file: Path, tmp_path: Path, **changes: object) -> CharLMConfig:
    base = CharLMConfig(embedding=8, hidden=24, steps=12, batch=4, lr=1e-2, minutes=10.0, max_updates=60, sampler="streams",
                        eval_every_s=1e9, eval_chunks=4, text=str(text_file), out=str(tmp_path / "run"))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_shuffler_covers_every_index_each_epoch_and_is_seeded() -> None:
    shuffler = Shuffler(10, 3, seed=4, drop_last=False)
    epoch = np.concatenate([shuffler.next_batch() for _ in range(4)])
    assert sorted(epoch.tolist()) == list(range(10))
    again = Shuffler(10, 3, seed=4, drop_last=False)
    assert np.array_equal(np.concatenate([again.next_batch() for _ in range(4)]), epoch)
    state = json.loads(json.dumps(shuffler.state()))
    expected = [shuffler.next_batch() for _ in range(5)]
    restored = Shuffler(10, 3, seed=99, drop_last=False)
    restored.load_state(state)
    assert all(np.array_equal(a, restored.next_batch()) for a in expected)


def test_document_streams_reassemble_documents_and_reset_at_boundaries() -> None:
    documents = [np.arange(start, start + n) for start, n in ((0, 11), (100, 5), (200, 23), (300, 2))]
    streams = DocumentStreams(documents, steps=4, batch=2, seed=0)
    pieces: list[list[int]] = [[], []]
    seen: list[list[list[int]]] = [[], []]
    for _ in range(40):
        chunk = streams.next_chunk()
        assert chunk.inputs.shape == (4, 2) and np.all(chunk.lengths >= 1)
        for b in range(2):
            if chunk.reset[b] and pieces[b]:
                seen[b].append(pieces[b])
                pieces[b] = []
            n = int(chunk.lengths[b])
            if not pieces[b]:
                pieces[b].append(int(chunk.inputs[0, b]))
            assert np.array_equal(chunk.targets[: n - 1, b], chunk.inputs[1:n, b])
            pieces[b].extend(chunk.targets[:n, b].tolist())
    finished = [doc for stream in seen for doc in stream]
    assert finished and all(any(np.array_equal(doc, d) for d in documents) for doc in finished)
    state = json.loads(json.dumps(streams.state()))
    expected = [streams.next_chunk() for _ in range(3)]
    restored = DocumentStreams(documents, steps=4, batch=2, seed=7)
    restored.load_state(state)
    for chunk in expected:
        other = restored.next_chunk()
        assert np.array_equal(chunk.inputs, other.inputs) and np.array_equal(chunk.reset, other.reset)


def test_stdlib_corpus_is_real_and_held_out_is_disjoint() -> None:
    files = stdlib_sources()
    assert len(files) > 100 and sum(f.stat().st_size for f in files) > 2_000_000
    training, held_out = split_held_out(files)
    assert held_out and not set(training) & set(held_out) and len(training) + len(held_out) == len(files)


def test_safetensors_round_trip_and_interoperability(tmp_path: Path) -> None:
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1.5, -2.0]),
              "steps": np.array([7], dtype=np.int64)}
    save_safetensors(tmp_path / "a.safetensors", arrays, {"note": "hello"})
    loaded, metadata = load_safetensors(tmp_path / "a.safetensors")
    assert metadata == {"note": "hello"}
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and np.array_equal(loaded[name], value)
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # the temporary file is gone
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    theirs = safetensors_numpy.load_file(str(tmp_path / "a.safetensors"))
    assert all(np.array_equal(theirs[k], v) for k, v in arrays.items())
    safetensors_numpy.save_file(arrays, str(tmp_path / "b.safetensors"), metadata={"x": "y"})
    ours, metadata = load_safetensors(tmp_path / "b.safetensors")
    assert metadata == {"x": "y"} and all(np.array_equal(ours[k], v) for k, v in arrays.items())


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_safetensors(path, {"w": np.ones((50, 50))}, {"format": "rnn-xp-checkpoint/1", "state": "{}"})
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_safetensors(tmp_path / "tiny")
    (tmp_path / "text.json").write_text('{"hello": "world"}' * 10)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_safetensors(tmp_path / "text.json")
    save_safetensors(tmp_path / "other.safetensors", {"w": np.ones(2)}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not an rnn_xp checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_checkpoint_must_fit_the_model(text_file: Path, tmp_path: Path) -> None:
    config = _config(text_file, tmp_path, max_updates=2)
    trainer = CharLMTrainer(config, load_corpus(config.text))
    trainer.update()
    trainer.save(tmp_path / "ck.safetensors")
    bigger = CharLMTrainer(replace(config, hidden=25), load_corpus(config.text))
    with pytest.raises(CheckpointError, match=r"'rnn.weight_ih_l0' is float32\[24, 8\]; the model has float32\[25, 8\]"):
        bigger.resume(tmp_path / "ck.safetensors")


def test_carrying_state_across_chunks_equals_one_long_forward() -> None:
    """Chunked streaming with the state carried gives exactly the outputs of one pass over the whole sequence."""
    rnn = rnn_xp.RNN(3, 5, num_layers=2, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((12, 2, 3))
    whole, h_whole = rnn(x)
    state, pieces = None, []
    for start in range(0, 12, 5):
        out, state = rnn(x[start : start + 5], state)
        pieces.append(out)
    assert_close(np.concatenate(pieces), whole, rtol=1e-14)
    assert_close(state, h_whole, rtol=1e-14)


@pytest.mark.parametrize("sampler", ["streams", "windows"])
def test_short_charlm_run_learns(text_file: Path, tmp_path: Path, sampler: str) -> None:
    config = _config(text_file, tmp_path, sampler=sampler)
    trainer = CharLMTrainer(config, load_corpus(config.text))
    before = trainer.evaluate(6)
    losses = [trainer.update() for _ in range(150)]
    after = trainer.evaluate(6)
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.5
    assert after < before - 0.8, (before, after)


@pytest.mark.parametrize("sampler", ["streams", "windows"])
def test_resume_gives_the_same_next_losses(text_file: Path, tmp_path: Path, sampler: str) -> None:
    config = _config(text_file, tmp_path, sampler=sampler)
    corpus = load_corpus(config.text)
    uninterrupted = CharLMTrainer(config, corpus)
    for _ in range(7):
        uninterrupted.update()
    uninterrupted.save(tmp_path / "resume.safetensors")
    expected = [uninterrupted.update() for _ in range(5)]
    resumed = CharLMTrainer(replace(config, seed=config.seed), corpus)
    resumed.resume(tmp_path / "resume.safetensors")
    assert resumed.updates == 7
    assert [resumed.update() for _ in range(5)] == expected


def test_sample_generates_from_a_checkpoint(text_file: Path, tmp_path: Path) -> None:
    from rnn_xp.training.charlm import train

    summary = train(_config(text_file, tmp_path, max_updates=80), log=lambda _: None, progress=False)
    text = sample(summary["checkpoint"], length=120, prime="def ", seed=0)
    assert text.startswith("def ") and len(text) == 124
    vocabulary = set(CharVocabulary(TEXT + "?").characters)
    assert set(text) <= vocabulary
    assert sample(summary["checkpoint"], length=50, prime="def ", seed=0) == sample(
        summary["checkpoint"], length=50, prime="def ", seed=0
    )
    assert Path(summary["checkpoint"]).exists() and summary["held_out_bits_per_char"] < 3.5


def test_adding_problem_learns_past_the_baseline(tmp_path: Path) -> None:
    x, target = adding_batch(np.random.default_rng(0), 5, 30, "float32")
    assert x.shape == (30, 5, 2) and target.shape == (5, 1)
    assert np.all(x[:, :, 1].sum(axis=0) == 2)
    assert np.allclose(target[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=0))
    summary = train_adding(
        AddingConfig(steps=30, hidden=32, minutes=10.0, max_updates=600, eval_every_s=1e9, out=str(tmp_path)),
        log=lambda _: None, progress=False,
    )
    assert summary["held_out_mse"] < 0.05, summary["held_out_mse"]


# Issue 11, item 10: checkpoint integrity and errors.
def test_a_flipped_byte_inside_a_tensor_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_safetensors(path, {"w": np.arange(64, dtype=np.float64)}, {"note": "x"})
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01  # inside the tensor bytes: every size still adds up
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c.safetensors is corrupt: its names, shapes, metadata or tensor bytes do not match the checksum"):
        load_safetensors(path)


def test_unreadable_paths_and_state_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing.safetensors cannot be read as a checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match=r"cannot be read as a checkpoint"):
        load_checkpoint(tmp_path)  # a directory
    path = tmp_path / "s.safetensors"
    save_safetensors(path, {"model.w": np.ones(2)}, {"format": "rnn-xp-checkpoint/1", "state": "{not json"})
    with pytest.raises(CheckpointError, match=r"its state block is not readable JSON"):
        load_checkpoint(path)


def test_writes_clean_up_killed_writes_and_use_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import time

    orphan = tmp_path / ".c.safetensors.killed1"
    orphan.write_bytes(b"half a checkpoint")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    recent = tmp_path / ".c.safetensors.inflight"
    recent.write_bytes(b"another writer's file")
    save_safetensors(tmp_path / "c.safetensors", {"w": np.ones(3)}, {})
    assert not orphan.exists() and recent.exists()
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


# Issue 12, item 11: the safetensors package reads and writes the files; those of the earlier hand-written writer load.
LEGACY = Path(__file__).parent / "data" / "legacy-checkpoint.safetensors"


def test_a_checkpoint_of_the_hand_written_writer_loads_and_is_verified(tmp_path: Path) -> None:
    """tests/data/legacy-checkpoint.safetensors was written by rnn_xp's own safetensors writer before the package
    replaced it (its checksum is over the tensors in file order, which is neither name order nor the package's)."""
    params, optimizer, state = load_checkpoint(LEGACY)
    assert state == {"kind": "legacy-test", "step": 7}
    assert np.array_equal(params["rnn.weight_ih_l0"], np.arange(6, dtype=np.float32).reshape(3, 2) / 8)
    assert np.array_equal(params["rnn.weight_hh_l0"], -np.arange(9, dtype=np.float32).reshape(3, 3) / 4)
    assert params["head.bias"].dtype == np.float64 and params["head.bias"].tolist() == [0.5, -1.25]
    assert optimizer["rnn.weight_ih_l0.step"].dtype == np.int64 and optimizer["rnn.weight_ih_l0.step"].tolist() == [7]
    assert optimizer["mask"].dtype == np.uint8 and optimizer["mask"].tolist() == [1, 0, 1]
    assert optimizer["count"].dtype == np.int32 and optimizer["count"].tolist() == [3, 4]
    data = bytearray(LEGACY.read_bytes())
    data[-10] ^= 0x04
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped.safetensors is corrupt: the tensor bytes do not match"):
        load_checkpoint(tmp_path / "flipped.safetensors")


def test_written_files_are_the_packages_and_carry_a_checksum_of_their_whole_content(tmp_path: Path) -> None:
    """The package reads what we write; the checksum covers the metadata and names too (tests/test_properties.py
    flips every bit)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    arrays = {"z": np.arange(3, dtype=np.float32), "a": np.arange(4, dtype=np.int64), "m": np.ones(2)}
    save_safetensors(tmp_path / "c.safetensors", arrays, {"note": "n"})
    with safe_open(str(tmp_path / "c.safetensors"), framework="numpy") as file:
        metadata = file.metadata()
    assert set(metadata) == {"note", "content_sha256"} and len(metadata["content_sha256"]) == 64
    for changed in ({"note": "N"}, {"note": "n", "extra": ""}):
        save_safetensors(tmp_path / "d.safetensors", arrays, changed)
        with safe_open(str(tmp_path / "d.safetensors"), framework="numpy") as file:
            assert file.metadata()["content_sha256"] != metadata["content_sha256"]
    theirs = load_file(str(tmp_path / "c.safetensors"))
    assert all(theirs[k].dtype == v.dtype and np.array_equal(theirs[k], v) for k, v in arrays.items())
