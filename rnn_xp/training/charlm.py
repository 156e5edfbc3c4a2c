"""Character-level language model: Embedding -> RNN -> Linear, trained by truncated BPTT on the Python standard
library's own sources (or any text), evaluated in bits per character on held-out files, sampled from checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from rnn_xp._arrays import place, to_numpy
from rnn_xp.layer import RNN
from rnn_xp.training.checkpoint import load_checkpoint, save_checkpoint
from rnn_xp.training.data import CharVocabulary, DocumentStreams, RandomWindows, split_held_out, stdlib_sources
from rnn_xp.training.layers import Embedding, Linear
from rnn_xp.training.loop import TrainingRun, run_training
from rnn_xp.training.losses import softmax_cross_entropy, softmax_cross_entropy_backward
from rnn_xp.training.models import SequenceModel
from rnn_xp.training.optim import Adam, clip_grad_norm
from rnn_xp.training.report import plot_curves

SAMPLERS: dict[str, Any] = {"windows": RandomWindows, "streams": DocumentStreams}


@dataclass
class CharLMConfig:
    embedding: int = 64
    hidden: int = 256
    layers: int = 1
    steps: int = 64  # truncation length T
    batch: int = 32
    lr: float = 2e-3
    clip: float = 5.0
    # "windows": independent random windows from a zero state (default: uncorrelated batches);
    # "streams": truncated BPTT over B document streams with the state carried across chunks.
    sampler: str = "windows"
    minutes: float = 4.5  # training time budget (evaluation and checkpoint come on top)
    max_updates: int | None = None
    eval_every_s: float = 30.0
    eval_chunks: int = 40  # periodic held-out estimate: eval_chunks * steps * batch characters
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    text: str | None = None  # a file to train on instead of the stdlib sources
    out: str = "runs/charlm"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            msg = f"sampler must be one of {sorted(SAMPLERS)}; got {self.sampler!r}"
            raise ValueError(msg)
        for name in ("embedding", "hidden", "layers", "steps", "batch"):
            if int(getattr(self, name)) < 1:
                msg = f"{name} must be a positive integer; got {getattr(self, name)!r}"
                raise ValueError(msg)


@dataclass
class Corpus:
    vocabulary: CharVocabulary
    training: list[np.ndarray]
    held_out: list[np.ndarray]
    description: str = ""
    sizes: dict[str, int] = field(default_factory=dict)


def load_corpus(text_file: str | None) -> Corpus:
    """The stdlib sources (every 20th file held out) or ``text_file`` (its last 5% held out)."""
    if text_file is None:
        train_paths, held_paths = split_held_out(stdlib_sources())
        train_texts = [CharVocabulary.clean(p.read_text(errors="replace")) for p in train_paths]
        held_texts = [CharVocabulary.clean(p.read_text(errors="replace")) for p in held_paths]
        description = f"Python {'.'.join(map(str, __import__('sys').version_info[:2]))} standard library sources"
    else:
        text = CharVocabulary.clean(Path(text_file).read_text(errors="replace"))
        cut = int(len(text) * 0.95)
        train_texts, held_texts = [text[:cut]], [text[cut:]]
        description = str(text_file)
    vocabulary = CharVocabulary("".join(train_texts) + "?")
    return Corpus(
        vocabulary,
        [vocabulary.encode(t) for t in train_texts],
        [vocabulary.encode(t) for t in held_texts],
        description,
        {"training_chars": sum(map(len, train_texts)), "held_out_chars": sum(map(len, held_texts))},
    )


def build_model(config: CharLMConfig, vocabulary_size: int) -> SequenceModel:
    seed = config.seed
    return SequenceModel(
        RNN(config.embedding, config.hidden, num_layers=config.layers, device=config.device, dtype=config.dtype,
            seed=seed),
        Linear(config.hidden, vocabulary_size, device=config.device, dtype=config.dtype, seed=seed + 1),
        embedding=Embedding(vocabulary_size, config.embedding, device=config.device, dtype=config.dtype,
                            seed=seed + 2),
    )


class CharLMTrainer:
    """Holds the model, optimizer, data streams and carried state; one :meth:`update` is one BPTT chunk."""

    def __init__(self, config: CharLMConfig, corpus: Corpus) -> None:
        self.config, self.corpus = config, corpus
        self.model = build_model(config, len(corpus.vocabulary))
        self.xp = self.model.xp
        self.optimizer = Adam(lr=config.lr)
        self.streams = SAMPLERS[config.sampler](
            corpus.training, steps=config.steps, batch=config.batch, seed=config.seed
        )
        self.state = self._zeros()
        self.updates = 0

    def _zeros(self) -> Any:
        c = self.config
        like = self._like()
        return self.xp.zeros((c.layers, c.batch, c.hidden), dtype=like.dtype, device=device_of(like))

    def _like(self) -> Any:
        """An array of the model's, for the dtype and device of every array the trainer creates."""
        return self.model.parameters()["rnn.weight_hh_l0"]

    def _place(self, host: Any) -> Any:
        return place(self.xp, host, self._like())

    def _loss(self, chunk: Any, state: Any) -> tuple[Any, Any, Any, Any]:
        xp, steps, batch = self.xp, self.config.steps, self.config.batch
        if chunk.reset.all():
            h0 = None
        else:
            h0 = xp.where(self._place(~chunk.reset)[None, :, None], state, xp.zeros_like(state))
        full = bool(chunk.lengths.min() == steps)  # no padding: skip the length mask
        logits, h_n = self.model(self._place(chunk.inputs), h0, None if full else chunk.lengths)
        vocabulary = logits.shape[-1]
        loss, cache = softmax_cross_entropy(
            xp.reshape(logits, (steps * batch, vocabulary)),
            xp.reshape(self._place(chunk.targets), (steps * batch,)),
            None if full else xp.reshape(self._place(chunk.target_mask()), (steps * batch,)),
        )
        return loss, cache, h_n, logits.shape

    def update(self) -> float:
        """One truncated-BPTT step: forward a chunk from the carried state, backward, clip, Adam. Returns the loss
        in nats per character."""
        chunk = self.streams.next_chunk()
        loss, cache, h_n, shape = self._loss(chunk, self.state)
        self.model.backward(self.xp.reshape(softmax_cross_entropy_backward(cache), shape))
        grads, _ = clip_grad_norm(self.model.grads, self.config.clip)
        self.model.set_parameters(self.optimizer.step(self.model.parameters(), grads))
        self.state = h_n  # carried to the next chunk; backward never reaches past it (detached)
        self.updates += 1
        return float(loss)

    def evaluate(self, chunks: int) -> float:
        """Bits per character on held-out text: ``chunks`` chunks of streams with carried state (same seed each
        time, so successive evaluations see the same characters)."""
        c = self.config
        streams = DocumentStreams(self.corpus.held_out, steps=c.steps, batch=c.batch, seed=12345)
        state, nats, count = self._zeros(), 0.0, 0
        training = self.model.rnn.training
        self.model.rnn.eval()
        for _ in range(chunks):
            chunk = streams.next_chunk()
            loss, _, state, _ = self._loss(chunk, state)
            characters = int(chunk.lengths.sum())
            nats += float(loss) * characters
            count += characters
        self.model.rnn.train(training)
        return nats / count / math.log(2)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": "charlm",
            "config": asdict(self.config),
            "characters": self.corpus.vocabulary.characters,
            "updates": self.updates,
            "optimizer": self.optimizer.config(),
            "streams": self.streams.state(),
            "dropout_rng": self.model.rnn.dropout_rng_state(),
        }

    def save(self, path: Path) -> None:
        arrays = {"carried_state": self.state, **self.optimizer.state_arrays()}
        save_checkpoint(path, params=self.model.parameters(), optimizer_arrays=arrays, state=self.checkpoint_state())

    def resume(self, path: Path) -> None:
        params, optimizer_arrays, state = load_checkpoint(path, expected_params=self.model.parameters())
        self.model.set_parameters({k: self._place(v) for k, v in params.items()})
        self.state = self._place(optimizer_arrays.pop("carried_state"))
        self.optimizer.load_state(state["optimizer"], {k: self._place(v) for k, v in optimizer_arrays.items()})
        self.streams.load_state(state["streams"])
        self.model.rnn.set_dropout_rng_state(state["dropout_rng"])
        self.updates = int(state["updates"])


def train(
    config: CharLMConfig, *, log: Callable[[str], None] = print, progress: bool = True,
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """Train for ``config.minutes`` (or ``max_updates``); returns the history and final held-out bits/char.

    ``resume``: a checkpoint of this example to continue from (parameters, optimizer, streams, carried state and the
    update count); it must fit the model ``config`` builds (:class:`CheckpointError` otherwise)."""
    corpus = load_corpus(config.text)
    trainer = CharLMTrainer(config, corpus)
    if resume is not None:
        trainer.resume(Path(resume))
        log(f"charlm: resumed from {resume} at update {trainer.updates}")
    out = Path(config.out)
    log(
        f"charlm: {corpus.description}: {corpus.sizes['training_chars']:,} training and "
        f"{corpus.sizes['held_out_chars']:,} held-out characters, vocabulary {len(corpus.vocabulary)}; "
        f"Embedding({config.embedding}) + RNN(H={config.hidden}, L={config.layers}) + Linear, Adam {config.lr}, "
        f"T={config.steps}, B={config.batch}, {config.sampler}, on {config.device}"
    )
    started = time.perf_counter()
    smoothed: list[float] = []

    def postfix(run: TrainingRun, bits: float) -> dict[str, str]:
        # Training figures only: the one held-out figure is the final evaluation below (the periodic estimates on
        # eval_chunks chunks are drawn in the plot, labelled as estimates).
        smoothed[:] = [bits if not smoothed else 0.98 * smoothed[0] + 0.02 * bits]
        return {
            "train_bits_per_char": f"{smoothed[0]:.3f}",
            "chars_per_s": f"{trainer.updates * config.steps * config.batch / max(run.train_seconds, 1e-9):,.0f}",
        }

    run = run_training(
        lambda: trainer.update() / math.log(2), lambda: trainer.evaluate(config.eval_chunks),
        budget_seconds=config.minutes * 60.0, max_updates=config.max_updates, eval_every_s=config.eval_every_s,
        progress=progress, postfix=postfix, run=TrainingRun(updates=trainer.updates),
    )
    # The checkpoint first: a second Ctrl-C during the final evaluation must not lose the run.
    checkpoint = out / "charlm.safetensors"
    trainer.save(checkpoint)
    if run.interrupted:
        log(f"interrupted: saved what was trained to {checkpoint}; evaluating it")
    history, train_seconds = run.history, run.train_seconds
    full_chunks = max(1, corpus.sizes["held_out_chars"] // (config.steps * config.batch))
    final = trainer.evaluate(full_chunks)
    history["final"] = [(train_seconds, final)]
    figure = plot_curves(
        history, out / "charlm-loss.png", "charlm: bits per character", "bits per character",
        held_out_label=f"held-out estimate ({config.eval_chunks} chunks)",
        final_label=f"held-out, all {full_chunks * config.steps * config.batch:,} characters",
    )
    summary = {
        "updates": trainer.updates,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "held_out_bits_per_char": final,
        "held_out_chars_evaluated": full_chunks * config.steps * config.batch,
        "chars_per_second": trainer.updates * config.steps * config.batch / max(train_seconds, 1e-9),
        "checkpoint": str(checkpoint),
        "interrupted": run.interrupted,
        "plot": str(figure) if figure else None,
        "history": history,
    }
    log(
        f"charlm: {trainer.updates} updates in {train_seconds:.0f} s of training "
        f"({summary['chars_per_second']:,.0f} characters/s); saved {checkpoint}"
    )
    log(
        f"held-out: {final:.3f} bits per character (the model's cross-entropy for the next character, in bits, "
        f"averaged over {summary['held_out_chars_evaluated']:,} characters of text it never trained on, read in "
        f"{config.batch} streams with the state carried across chunks)"
    )
    return summary


def sample(checkpoint: str | Path, *, length: int = 400, prime: str = "def ", temperature: float = 0.8,
           seed: int | None = None, device: str = "cpu") -> str:
    """Generate text from a charlm checkpoint: run ``prime`` through the model, then draw one character at a time,
    carrying the hidden state (stateful streaming inference)."""
    arrays, _, state = load_checkpoint(checkpoint)
    if state.get("kind") != "charlm":
        msg = f"{checkpoint} is not a charlm checkpoint (kind {state.get('kind')!r})"
        raise ValueError(msg)
    config = CharLMConfig(**{**state["config"], "device": device})
    vocabulary = CharVocabulary(state["characters"])
    model = build_model(config, len(vocabulary))
    xp = model.xp
    like = model.parameters()["rnn.weight_hh_l0"]
    model.set_parameters({k: place(xp, v, like) for k, v in arrays.items()})
    model.rnn.eval()
    rng = np.random.default_rng(seed)
    h = xp.zeros((config.layers, 1, config.hidden), dtype=like.dtype, device=device_of(like))
    tokens = vocabulary.encode(prime or "\n")
    logits, h = model(place(xp, tokens[:, None], like), h)
    generated = []
    for _ in range(length):
        scores = to_numpy(logits[-1, 0, :]).astype(np.float64) / max(temperature, 1e-6)
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        token = int(rng.choice(len(probabilities), p=probabilities))
        generated.append(token)
        logits, h = model(place(xp, np.array([[token]], dtype=np.int64), like), h)
    return prime + vocabulary.decode(generated)
