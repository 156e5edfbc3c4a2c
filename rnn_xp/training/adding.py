"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): many-to-one regression over long sequences.

Each step carries (a value in U(0, 1), a marker in {0, 1}); exactly two steps are marked, one in each half; the
target is the sum of the two marked values. Always predicting 1 gives MSE 1/6 = 0.167, the baseline to beat.

Default model: RNN(2 -> H) with relu and W_hh initialised to the identity, zero biases (the IRNN of Le et al.
2015), whose gradient neither explodes nor vanishes at the start, then a Linear head on the last state; Adam with
clipping. ``--init torch`` keeps torch's uniform init with tanh, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from rnn_xp._arrays import place
from rnn_xp.layer import RNN
from rnn_xp.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnn_xp.training.layers import Linear
from rnn_xp.training.loop import TrainingRun, run_training
from rnn_xp.training.losses import mse, mse_backward
from rnn_xp.training.models import SequenceModel
from rnn_xp.training.optim import Adam, clip_grad_norm
from rnn_xp.training.report import plot_curves

BASELINE_MSE = 1.0 / 6.0
HELD_OUT = 1000  # held-out sequences, drawn once from their own seed
INITS = ("identity", "torch")  # see AddingConfig.init


@dataclass
class AddingConfig:
    steps: int = 100
    hidden: int = 64
    batch: int = 64
    lr: float = 1e-3
    clip: float = 1.0
    init: str = "identity"  # "identity" (IRNN: relu, W_hh = I, zero biases) or "torch" (tanh, uniform)
    minutes: float = 3.0
    max_updates: int | None = None
    eval_every_s: float = 10.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    out: str = "runs/adding"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            msg = f"init must be 'identity' or 'torch'; got {self.init!r}"
            raise ValueError(msg)
        if int(self.steps) < 2:
            msg = f"steps must be at least 2 (one marker in each half of the sequence); got {self.steps!r}"
            raise ValueError(msg)


def adding_batch(rng: np.random.Generator, batch: int, steps: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """x (steps, batch, 2) and target (batch, 1)."""
    values = rng.random((steps, batch))
    markers = np.zeros((steps, batch))
    half = steps // 2
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, steps, size=batch)
    markers[first, np.arange(batch)] = 1.0
    markers[second, np.arange(batch)] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)
    target = (values[first, np.arange(batch)] + values[second, np.arange(batch)])[:, None].astype(dtype)
    return x, target


def build_model(config: AddingConfig) -> SequenceModel:
    nonlinearity = "relu" if config.init == "identity" else "tanh"
    rnn = RNN(2, config.hidden, nonlinearity=nonlinearity, device=config.device, dtype=config.dtype, seed=config.seed)
    if config.init == "identity":
        xp = rnn.xp
        like = rnn.parameters()["weight_hh_l0"]
        rnn.set_parameter("weight_hh_l0", xp.eye(config.hidden, dtype=like.dtype, device=device_of(like)))
        for name in ("bias_ih_l0", "bias_hh_l0"):
            rnn.set_parameter(name, xp.zeros_like(rnn.parameters()[name]))
    elif config.init != "torch":
        msg = f"init must be 'identity' or 'torch'; got {config.init!r}"
        raise ValueError(msg)
    head = Linear(config.hidden, 1, device=config.device, dtype=config.dtype, seed=config.seed + 1)
    return SequenceModel(rnn, head, many_to_one=True)


def train(config: AddingConfig, *, log: Callable[[str], None] = print, progress: bool = True,
          resume: str | Path | None = None) -> dict[str, Any]:
    """Train for ``config.minutes`` (or ``max_updates``); ``resume``: an adding checkpoint to continue from
    (parameters, optimizer state, update count; fresh batches), which must fit the model ``config`` builds."""
    model = build_model(config)
    xp = model.xp
    optimizer = Adam(lr=config.lr)
    done = 0
    if resume is not None:
        params, optimizer_arrays, state = load_checkpoint(resume, expected_params=model.parameters())
        if state.get("kind") != "adding":
            msg = f"{resume} is not an adding checkpoint (kind {state.get('kind')!r})"
            raise CheckpointError(msg)
        like = model.parameters()["rnn.weight_hh_l0"]
        model.set_parameters({k: place(xp, v, like) for k, v in params.items()})
        optimizer.load_state(state["optimizer"], {k: place(xp, v, like) for k, v in optimizer_arrays.items()})
        done = int(state.get("updates", 0))
        log(f"adding: resumed from {resume} at update {done}")
    rng = np.random.default_rng(config.seed)
    held_x, held_y = adding_batch(np.random.default_rng(10_000 + config.seed), HELD_OUT, config.steps, config.dtype)
    like = model.parameters()["rnn.weight_hh_l0"]
    held_x, held_y = place(xp, held_x, like), place(xp, held_y, like)
    log(
        f"adding: T={config.steps}, RNN(2 -> {config.hidden}, init {config.init}) + Linear, Adam {config.lr}, "
        f"clip {config.clip}, B={config.batch}; baseline MSE {BASELINE_MSE:.3f}"
    )

    def held_out() -> float:
        prediction, _ = model(held_x)
        return float(mse(prediction, held_y)[0])

    def update() -> float:
        x, y = adding_batch(rng, config.batch, config.steps, config.dtype)
        prediction, _ = model(place(xp, x, like))
        loss, cache = mse(prediction, place(xp, y, like))
        model.backward(mse_backward(cache))
        grads, _ = clip_grad_norm(model.grads, config.clip)
        model.set_parameters(optimizer.step(model.parameters(), grads))
        return float(loss)

    run = run_training(
        update, held_out, budget_seconds=config.minutes * 60.0, max_updates=config.max_updates,
        eval_every_s=config.eval_every_s, progress=progress,
        postfix=lambda run, loss: {"train_mse": f"{loss:.4f}",
                                   "held_out_mse": f"{run.history['held_out'][-1][1]:.4f}"},
        run=TrainingRun(updates=done, history={"train": [], "held_out": [(0.0, held_out())]}),
    )
    out = Path(config.out)  # the checkpoint first: a second Ctrl-C during the final evaluation must not lose the run
    save_checkpoint(out / "adding.safetensors", params=model.parameters(), optimizer_arrays=optimizer.state_arrays(),
                    state={"kind": "adding", "config": asdict(config), "optimizer": optimizer.config(),
                           "updates": run.updates})
    if run.interrupted:
        log("interrupted: saved what was trained; evaluating it")
    history, seconds, updates = run.history, run.train_seconds, run.updates
    final = held_out()
    history["held_out"].append((seconds, final))
    figure = plot_curves(
        history, out / "adding-loss.png", f"adding problem, T={config.steps}, init {config.init}", "MSE",
        log_y=True, baseline=(BASELINE_MSE, "baseline: always predict 1 (MSE 0.167)"),
    )
    below = next((s for s, v in history["held_out"] if v < 0.1 * BASELINE_MSE), None)
    log(
        f"adding: {updates} updates in {seconds:.0f} s; held-out MSE {final:.4f} (mean squared error of the "
        f"predicted sum on the same {HELD_OUT:,} sequences the progress bar evaluates, never trained on; baseline "
        f"{BASELINE_MSE:.3f}, always predicting 1); "
        + (f"below a tenth of the baseline after {below:.0f} s" if below is not None else "not yet below 0.017")
    )
    return {"updates": updates, "train_seconds": seconds, "held_out_mse": final, "history": history,
            "interrupted": run.interrupted,
            "seconds_to_tenth_of_baseline": below, "plot": str(figure) if figure else None,
            "log10_improvement": math.log10(BASELINE_MSE / max(final, 1e-12))}

