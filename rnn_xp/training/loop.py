"""The one training loop of the examples: updates until a time budget (or an update count) is spent, a held-out
evaluation every so often, a progress bar, and Ctrl-C that stops the loop but keeps what was trained."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnn_xp.training.report import progress_bar


@dataclass
class TrainingRun:
    """What the loop did: ``history['train']`` and ``history['held_out']`` hold (training seconds, value) pairs."""

    updates: int = 0
    train_seconds: float = 0.0
    history: dict[str, list[Any]] = field(default_factory=lambda: {"train": [], "held_out": []})
    interrupted: bool = False


def run_training(
    update: Callable[[], float],
    evaluate: Callable[[], float],
    *,
    budget_seconds: float,
    max_updates: int | None,
    eval_every_s: float,
    progress: bool,
    postfix: Callable[[TrainingRun, float], dict[str, str]],
    run: TrainingRun | None = None,
) -> TrainingRun:
    """Call ``update()`` (one optimizer step; returns the value to record) until ``budget_seconds`` of update time
    or ``max_updates`` updates (counting ``run.updates`` already done); ``evaluate()`` every ``eval_every_s``
    wall seconds; ``postfix(run, value)`` labels the progress bar. Only time inside ``update`` counts as training."""
    run = run if run is not None else TrainingRun()
    bar = progress_bar(budget_seconds) if progress else None
    last_eval = time.perf_counter()
    try:
        while run.train_seconds < budget_seconds and (max_updates is None or run.updates < max_updates):
            tick = time.perf_counter()
            value = update()
            run.train_seconds += time.perf_counter() - tick
            run.updates += 1
            run.history["train"].append((run.train_seconds, value))
            if time.perf_counter() - last_eval >= eval_every_s:
                run.history["held_out"].append((run.train_seconds, evaluate()))
                last_eval = time.perf_counter()
            if bar is not None:
                bar.update(min(int(run.train_seconds), int(budget_seconds)) - bar.n)
                bar.set_postfix(refresh=False, **postfix(run, value))
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return run
