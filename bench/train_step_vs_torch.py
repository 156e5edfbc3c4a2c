"""One charlm training step, rnn_xp on NumPy vs the same model in PyTorch on the CPU, in one process.

The model of ``rnn-xp train charlm`` — Embedding(64) + RNN(H=256) + Linear, Adam 2e-3, clipping at 5, T=64, B=32,
state carried across chunks — built twice from the same weights and fed the same chunks; the step times are
medians of alternating blocks. Prints and saves the ratio (rnn_xp / torch; below 1: rnn_xp is faster).

    python bench/train_step_vs_torch.py [--out bench/runs]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp.benchmark.machine import cpu_model
from rnn_xp.benchmark.timing import measure_alternating
from rnn_xp.training.charlm import CharLMConfig, CharLMTrainer, load_corpus


def torch_step(config: CharLMConfig, trainer: CharLMTrainer) -> Any:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    params = trainer.model.parameters()
    vocabulary = params["head.weight"].shape[0]
    embedding = torch.nn.Embedding(vocabulary, config.embedding)
    rnn = torch.nn.RNN(config.embedding, config.hidden, num_layers=config.layers)
    head = torch.nn.Linear(config.hidden, vocabulary)
    embedding.weight.data = torch.from_numpy(np.array(params["embedding.weight"]))
    rnn.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in params.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: torch.from_numpy(np.array(v)) for k, v in params.items() if k.startswith("head.")})
    modules = torch.nn.ModuleList([embedding, rnn, head])
    optimizer = torch.optim.Adam(modules.parameters(), lr=config.lr)
    # The same sampler as rnn_xp's trainer (another seed): the same kind of batches on both sides.
    streams = trainer.streams.__class__(trainer.corpus.training, steps=config.steps, batch=config.batch, seed=1)
    state = {"h": torch.zeros(config.layers, config.batch, config.hidden)}

    def step() -> None:
        chunk = streams.next_chunk()
        keep = torch.from_numpy(~chunk.reset)[None, :, None]
        h0 = torch.where(keep, state["h"], torch.zeros_like(state["h"]))
        features = embedding(torch.from_numpy(chunk.inputs))
        if chunk.lengths.min() == config.steps:  # no padding: no packing (rnn_xp skips its mask too)
            out, h_n = rnn(features, h0)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                features, torch.from_numpy(chunk.lengths), enforce_sorted=False
            )
            out, h_n = rnn(packed, h0)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=config.steps)
        targets = torch.from_numpy(np.where(chunk.target_mask(), chunk.targets, -100))
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, vocabulary), targets.reshape(-1),
                                                 ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), config.clip)
        optimizer.step()
        state["h"] = h_n.detach()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--max-seconds", type=float, default=8.0)
    args = parser.parse_args()
    config = CharLMConfig()
    corpus = load_corpus(None)
    trainer = CharLMTrainer(config, corpus)
    steps = {"rnn_xp": trainer.update, "torch": torch_step(config, trainer)}
    timings = measure_alternating(steps, rounds=4, pause=0.25, max_seconds=args.max_seconds)
    ratio = timings["rnn_xp"].median / timings["torch"].median
    import torch

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_model(),
        "threads": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "model": "Embedding(64) + RNN(H=256) + Linear, Adam 2e-3, clip 5, T=64, B=32 (charlm defaults)",
        "sampler": config.sampler,
        "rnn_xp": timings["rnn_xp"].as_dict(),
        "torch_cpu": timings["torch"].as_dict(),
        "ratio_rnn_xp_over_torch": ratio,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step_vs_torch.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"charlm training step on {result['cpu']} ({result['threads']} threads): rnn_xp "
        f"{timings['rnn_xp'].median * 1e3:.1f} ms (p25 {timings['rnn_xp'].low * 1e3:.1f}, p75 "
        f"{timings['rnn_xp'].high * 1e3:.1f}), torch {timings['torch'].median * 1e3:.1f} ms (p25 "
        f"{timings['torch'].low * 1e3:.1f}, p75 {timings['torch'].high * 1e3:.1f}); ratio {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
