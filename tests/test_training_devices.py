"""Every array the training code creates is placed on the model's device (``device=`` or ``rnn_xp._arrays.place``).

On a CPU machine there is only one device, so the tests wrap the model's namespace in one that refuses to create an
array without ``device=``: a creation that would land on the current GPU instead of the model's (``cuda:1``) fails
here. On a GPU machine the same training step also runs for real on the last GPU (marker ``gpu``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import HAVE_GPU

from rnn_xp.training import models
from rnn_xp.training.adding import AddingConfig
from rnn_xp.training.adding import train as train_adding
from rnn_xp.training.charlm import CharLMConfig, CharLMTrainer, load_corpus

CREATORS = {"asarray", "zeros", "ones", "empty", "full", "eye", "arange", "linspace"}


class DeviceStrictNamespace:
    """A namespace whose array creators insist on an explicit ``device=``."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._xp, name)
        if name not in CREATORS:
            return attribute

        def create(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("device") is None:
                msg = f"xp.{name} called without device=: the array would not follow the model's device"
                raise AssertionError(msg)
            return attribute(*args, **kwargs)

        return create


@pytest.fixture
def strict_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models (and their heads and embeddings) hand out the strict namespace."""
    original = models.SequenceModel.xp

    def strict(self: Any) -> Any:
        return DeviceStrictNamespace(original.fget(self))  # type: ignore[attr-defined]

    monkeypatch.setattr(models.SequenceModel, "xp", property(strict))


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(200)))
    return path


def _trainer(tmp_path: Path, device: str = "cpu") -> CharLMTrainer:
    config = CharLMConfig(embedding=8, hidden=16, steps=8, batch=3, sampler="streams", max_updates=3, eval_every_s=1e9,
                          eval_chunks=2, text=str(_text(tmp_path)), out=str(tmp_path / "run"), device=device)
    return CharLMTrainer(config, load_corpus(config.text))


def test_charlm_training_steps_create_every_array_with_a_device(tmp_path: Path, strict_models: None) -> None:
    trainer = _trainer(tmp_path)
    trainer.xp = DeviceStrictNamespace(trainer.xp)
    for part in (trainer.model.head, trainer.model.embedding):
        part.xp = DeviceStrictNamespace(part.xp)
    losses = [trainer.update() for _ in range(3)]
    assert all(np.isfinite(losses))
    assert np.isfinite(trainer.evaluate(2))


@pytest.mark.backends("numpy")
def test_the_strict_namespace_catches_a_creation_without_device(xp: Any) -> None:

    strict = DeviceStrictNamespace(xp)
    with pytest.raises(AssertionError, match=r"xp.zeros called without device="):
        strict.zeros((2,))
    assert strict.zeros((2,), device="cpu").shape == (2,)


def test_adding_training_creates_every_array_with_a_device(tmp_path: Path, strict_models: None) -> None:
    summary = train_adding(
        AddingConfig(steps=10, hidden=8, minutes=1.0, max_updates=3, eval_every_s=1e9, out=str(tmp_path)),
        log=lambda _: None, progress=False,
    )
    assert np.isfinite(summary["held_out_mse"])


@pytest.mark.gpu
def test_charlm_training_stays_on_the_last_gpu(tmp_path: Path) -> None:
    import cupy

    last = cupy.cuda.runtime.getDeviceCount() - 1
    trainer = _trainer(tmp_path, device=f"cuda:{last}")
    trainer.update()
    arrays = [trainer.state, *trainer.model.parameters().values(), *trainer.model.grads.values()]
    assert all(a.device.id == last for a in arrays), {a.device.id for a in arrays}
    assert HAVE_GPU
