"""Data for training: a seeded batch shuffler, document streams for truncated BPTT, and the stdlib text corpus.

Every object here that moves through data keeps its position and RNG in :meth:`state` (JSON-ready), so a resumed
run continues exactly where a checkpoint left it.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class Shuffler:
    """Index batches over ``n`` examples, reshuffled every epoch from a seeded generator."""

    def __init__(self, n: int, batch_size: int, *, seed: int | None = None, drop_last: bool = True) -> None:
        if n < 1 or batch_size < 1 or (drop_last and batch_size > n):
            msg = f"need 1 <= batch_size <= n; got batch_size={batch_size}, n={n}"
            raise ValueError(msg)
        self.n, self.batch_size, self.drop_last = n, batch_size, drop_last
        self.rng = np.random.default_rng(seed)
        self.epoch, self._order, self._position = 0, self.rng.permutation(n), 0

    def next_batch(self) -> np.ndarray:
        """The next batch of example indices (int64), starting a new shuffled epoch when one runs out."""
        remaining = self.n - self._position
        if remaining == 0 or (self.drop_last and remaining < self.batch_size):
            self.epoch += 1
            self._order, self._position = self.rng.permutation(self.n), 0
        batch = self._order[self._position : self._position + self.batch_size]
        self._position += len(batch)
        return batch

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "order": self._order.tolist(), "position": self._position,
                "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self._position = int(state["epoch"]), int(state["position"])
        self._order = np.asarray(state["order"], dtype=np.int64)
        self.rng.bit_generator.state = state["rng"]


@dataclass
class Chunk:
    """One truncated-BPTT chunk of B streams: inputs/targets (T, B) ints, lengths (B,), reset (B,) bool.

    ``lengths[b] < T`` where stream b's document ends inside the chunk (targets past it are padding);
    ``reset[b]`` where stream b starts a new document (its carried state must be zeroed).
    """

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray
    reset: np.ndarray

    def target_mask(self) -> np.ndarray:
        """(T, B) bool, True where a target is real (inside the stream's length)."""
        return np.arange(self.inputs.shape[0])[:, None] < self.lengths[None, :]


class DocumentStreams:
    """Feeds B parallel streams of documents in chunks of T steps; documents are taken in a seeded shuffled
    order, pass after pass. A stream's state carries from one chunk to the next within a document and is reset
    when it moves on to the next document."""

    def __init__(self, documents: list[np.ndarray], *, steps: int, batch: int, seed: int | None = None) -> None:
        self.documents = [d for d in documents if len(d) >= 2]
        if not self.documents:
            msg = "documents must hold at least one document of two or more tokens"
            raise ValueError(msg)
        self.steps, self.batch = steps, batch
        self.rng = np.random.default_rng(seed)
        self._order, self._next = self.rng.permutation(len(self.documents)), 0
        self._current = [-1] * batch  # document index per stream (-1: needs one)
        self._offset = [0] * batch

    def _take_document(self) -> int:
        if self._next == len(self._order):
            self._order, self._next = self.rng.permutation(len(self.documents)), 0
        index = int(self._order[self._next])
        self._next += 1
        return index

    def next_chunk(self) -> Chunk:
        steps = self.steps
        inputs = np.zeros((steps, self.batch), dtype=np.int64)
        targets = np.zeros((steps, self.batch), dtype=np.int64)
        lengths = np.zeros(self.batch, dtype=np.int64)
        reset = np.zeros(self.batch, dtype=bool)
        for b in range(self.batch):
            if self._current[b] < 0 or self._offset[b] >= len(self.documents[self._current[b]]) - 1:
                self._current[b], self._offset[b] = self._take_document(), 0
                reset[b] = True
            document, offset = self.documents[self._current[b]], self._offset[b]
            count = min(steps, len(document) - 1 - offset)
            inputs[:count, b] = document[offset : offset + count]
            targets[:count, b] = document[offset + 1 : offset + count + 1]
            lengths[b] = count
            self._offset[b] = offset + count
        return Chunk(inputs, targets, lengths, reset)

    def state(self) -> dict[str, Any]:
        return {"order": self._order.tolist(), "next": self._next, "current": list(self._current),
                "offset": list(self._offset), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._next = int(state["next"])
        self._current = [int(i) for i in state["current"]]
        self._offset = [int(i) for i in state["offset"]]
        self.rng.bit_generator.state = state["rng"]


class RandomWindows:
    """Independent batches: B random windows of T+1 tokens from the concatenated documents, each starting from
    a zero state (``reset`` all True, ``lengths`` all T). Successive batches are uncorrelated, unlike B document
    streams, whose consecutive chunks come from the same B documents."""

    def __init__(self, documents: list[np.ndarray], *, steps: int, batch: int, seed: int | None = None) -> None:
        self.text = np.concatenate(documents)
        if len(self.text) < steps + 2:
            msg = f"documents must hold more than steps + 1 = {steps + 1} tokens; got {len(self.text)}"
            raise ValueError(msg)
        self.steps, self.batch = steps, batch
        self.rng = np.random.default_rng(seed)

    def next_chunk(self) -> Chunk:
        starts = self.rng.integers(0, len(self.text) - self.steps - 1, size=self.batch)
        window = self.text[starts[None, :] + np.arange(self.steps + 1)[:, None]]
        return Chunk(window[:-1], window[1:], np.full(self.batch, self.steps, dtype=np.int64),
                     np.ones(self.batch, dtype=bool))

    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class CharVocabulary:
    """Characters <-> ids. Text is first mapped to ASCII (other characters become ``?``), so a character is a
    byte and bits per character are bits per byte."""

    def __init__(self, characters: str) -> None:
        self.characters = "".join(sorted(set(characters)))
        self._index = {c: i for i, c in enumerate(self.characters)}

    @staticmethod
    def clean(text: str) -> str:
        return text.encode("ascii", "replace").decode("ascii")

    def encode(self, text: str) -> np.ndarray:
        unknown = self._index.get("?", 0)
        return np.fromiter((self._index.get(c, unknown) for c in self.clean(text)), dtype=np.int64)

    def decode(self, ids: Any) -> str:
        return "".join(self.characters[int(i)] for i in ids)

    def __len__(self) -> int:
        return len(self.characters)


def stdlib_sources() -> list[Path]:
    """The Python standard library's own ``.py`` files (no tests, no site-packages), sorted: a real
    multi-megabyte text present on every machine with Python."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    files: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in skip)
        files += [Path(directory) / n for n in sorted(names) if n.endswith(".py")]
    return files


def split_held_out(paths: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    """(training, held-out): every ``every``-th file of the sorted list is held out."""
    ordered = sorted(paths)
    held_out = ordered[every - 1 :: every]
    chosen = set(held_out)
    return [p for p in ordered if p not in chosen], held_out
