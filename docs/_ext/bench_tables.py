"""Tables of the committed results in ``bench/results/*.json``, rendered as Markdown when the docs are built, so that
new measurements reach the pages without anyone retyping a number.

As a Sphinx extension it writes ``docs/_generated/*.md`` (pages ``{include}`` them) before the build reads any page.
Run as a script, ``python docs/_ext/bench_tables.py --readme`` rewrites the README's headline tables (between their
``<!-- bench-table: NAME -->`` and ``<!-- /bench-table -->`` markers); ``tests/test_docs.py`` checks that the README
holds what this renders.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
GENERATED = ROOT / "docs" / "_generated"
README = ROOT / "README.md"
NAMES = {"torch": "torch.nn.RNN", "onnxruntime": "ONNX Runtime", "jax": "JAX jit(lax.scan)", "numpy-loop":
         "NumPy per-step loop", "torch-cudnn": "torch.nn.RNN with cuDNN", "rnn_xp-generic": "rnn_xp, kernels off"}
CPU_PEERS = "amd-epyc-cpu-vs-peers.json"
CPU_QUICK = "reference-amd-epyc-quick.json"
GPU_SWEEP = "nvidia-h100-80gb-hbm3-cuda.json"
CPU_IN_PROCESS = "amd-epyc-cpu-vs-peers-in-process.json"
FIRST_CALL = "amd-epyc-first-call.json"


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _unstable(entry: dict[str, Any]) -> bool:
    return "p25_s" in entry and entry["p75_s"] > 3 * entry["p25_s"]


def _ratio_cell(row: dict[str, Any], peer: str) -> str:
    if peer not in row["speedup_vs"]:
        entry = row["results"].get(peer, {})
        return entry.get("reason", entry.get("status", "—")) if entry else "—"
    flag = " ⚠" if _unstable(row["results"][peer]) or _unstable(row["results"]["rnn_xp"]) else ""
    return f"{row['speedup_vs'][peer]:.2f}×{flag}"


def _peers(rows: list[dict[str, Any]]) -> list[str]:
    order = list(NAMES)
    return sorted({p for r in rows for p in r["results"] if p != "rnn_xp"}, key=order.index)


def machine(result: dict[str, Any]) -> str:
    """One line: where and when a result was measured."""
    info = result["machine"]
    gpus = ", ".join(g["name"] for g in info.get("gpus", [])) or "no GPU"
    cpu = info["cpu"]
    return (f"Measured {result['date'][:10]} on {cpu['model']} ({cpu['logical_cores']} logical cores, "
            f"{cpu.get('blas', 'BLAS unknown')}), {gpus}; {result['config']['dtype']}.")


def headline(results: list[dict[str, Any]], device: str) -> str:
    """Per peer: rnn_xp's speed-up (peer time / rnn_xp time, geometric mean over the rows) and the rows it wins,
    forward and forward+backward; where the same table was run more than once, the median over the runs with their
    range, and each run's count."""
    lines = ["| against | forward: speed-up | rows faster | forward+backward: speed-up | rows faster |",
             "|---|---:|---:|---:|---:|"]
    runs = [[r for r in result["rows"] if r["device"] == device] for result in results]
    for peer in _peers(runs[0]):
        cells = []
        for direction in ("fwd", "train"):
            per_run = [[r["speedup_vs"][peer] for r in rows if r["direction"] == direction and peer in r["speedup_vs"]]
                       for rows in runs]
            per_run = [ratios for ratios in per_run if ratios]
            if not per_run:
                cells += ["—", "—"]
                continue
            means = [_geomean(ratios) for ratios in per_run]
            spread = f" ({min(means):.2f}–{max(means):.2f}×)" if len(means) > 1 else ""
            wins = ", ".join(str(sum(x > 1 for x in ratios)) for ratios in per_run)
            cells += [f"{statistics.median(means):.2f}×{spread}", f"{wins} of {len(per_run[0])}"]
        lines.append(f"| {NAMES.get(peer, peer)} | " + " | ".join(cells) + " |")
    if len(runs) > 1:
        lines += ["", f"{len(runs)} runs of the same table, each implementation in a process of its own: the median "
                  "run's figure, the range over the runs in brackets, and each run's count of rows faster."]
    return "\n".join(lines) + "\n"


def first_call() -> str:
    """The first call of a new shape against later calls (bench/first_call.py)."""
    lines = ["| T, B, I, H | directions | first call ms | later call ms | first / later | first call in a fresh "
             "process ms |", "|---|---:|---:|---:|---:|---:|"]
    for row in _load(FIRST_CALL):
        t, b, i, h, d = row["shape"]
        lines.append(f"| {t}, {b}, {i}, {h} | {d} | {row['first_s'] * 1e3:.3f} | {row['later_s'] * 1e3:.3f} | "
                     f"{row['first_s'] / row['later_s']:.2f} | {row['first_in_fresh_process_s'] * 1e3:.1f} |")
    return "\n".join(lines) + "\n"


def _cpu_runs() -> list[dict[str, Any]]:
    """The CPU table and its repeats (``<name>-repeat<N>.json``)."""
    stem = CPU_PEERS.removesuffix(".json")
    return [_load(CPU_PEERS)] + [_load(p.name) for p in sorted(RESULTS.glob(f"{stem}-repeat*.json"))]


def rows_table(result: dict[str, Any], device: str) -> str:
    """Every row: rnn_xp's time and its speed-up over each peer, forward then forward+backward."""
    rows = [r for r in result["rows"] if r["device"] == device]
    peers = _peers(rows)
    parts = []
    for direction, title in (("fwd", "Forward"), ("train", "Forward+backward")):
        selected = [r for r in rows if r["direction"] == direction]
        if not selected:
            continue
        header = ["T", "B", "I", "H", "layer", "rnn_xp ms", *(f"vs {NAMES.get(p, p)}" for p in peers)]
        lines = [f"**{title}** (speed-up = peer time / rnn_xp time; ⚠: unstable timing)", "",
                 "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        for r in selected:
            case, ours = r["case"], r["results"]["rnn_xp"]
            layer = " ".join([str(case.get("num_layers", 1))] + (["bi"] if case.get("bidirectional") else [])
                             + (["lengths"] if case.get("with_lengths") else []))
            cells = [case["seq_len"], case["batch"], case["input_size"], case["hidden"], layer,
                     f"{ours['median_s'] * 1e3:.3f}" if "median_s" in ours else "—",
                     *(_ratio_cell(r, p) for p in peers)]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def verdict_block(result: dict[str, Any]) -> str:
    from rnn_xp.benchmark.verdict import verdict

    return "```text\n" + "\n".join(verdict(result)) + "\n```\n"


def loop_rule() -> str:
    data = _load("amd-epyc-loop-rule.json")
    batches = data["batches"]
    parts = [f"Measured on {data['machine']['cpu']} ({data['machine']['usable_cpus']} usable CPUs, "
             f"{data['machine']['blas']}), T={data['steps']}, I={data['input_size']}, median of {data['rounds']} "
             "rounds. c: compiled loop, n: NumPy loop, t: transposed NumPy loop."]
    for key, table in data["choices"].items():
        dtype, directions = key.split(",")
        lines = [f"**{dtype}, {'one direction' if directions == '1' else 'bidirectional'}**", "",
                 "| H \\ B | " + " | ".join(map(str, batches)) + " |", "|---|" + ":---:|" * len(batches)]
        lines += [f"| {h} | " + " | ".join(letters) + " |" for h, letters in table.items()]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def training() -> str:
    charlm, adding, torch_init = (_load(n) for n in ("charlm-summary.json", "adding-summary.json",
                                                     "adding-torch-init-summary.json"))
    step = _load("train_step_vs_torch.json")
    lines = ["| run | result | training time | updates |", "|---|---|---:|---:|",
             f"| `rnn-xp train charlm` | held-out {charlm['held_out_bits_per_char']:.3f} bits per character over "
             f"{charlm['held_out_chars_evaluated']:,} characters; {charlm['chars_per_second']:,.0f} characters/s | "
             f"{charlm['train_seconds']:.0f} s | {charlm['updates']:,} |",
             f"| `rnn-xp train adding` | held-out MSE {adding['held_out_mse']:.2g} (baseline 0.167) | "
             f"{adding['train_seconds']:.0f} s | {adding['updates']:,} |",
             f"| `rnn-xp train adding --init torch` | held-out MSE {torch_init['held_out_mse']:.3f} (baseline 0.167) "
             f"| {torch_init['train_seconds']:.0f} s | {torch_init['updates']:,} |"]
    lines += ["", f"One training step of the charlm model ({step['model']}), {step['cpu']}, {step['threads']} threads, "
              f"{step['date'][:10]}: rnn_xp {step['rnn_xp']['median_s'] * 1e3:.1f} ms, torch {step['torch']} "
              f"{step['torch_cpu']['median_s'] * 1e3:.1f} ms (median), a ratio of "
              f"{step['ratio_rnn_xp_over_torch']:.2f}."]
    return "\n".join(lines) + "\n"


def gpu_training() -> str:
    cpu, cuda = (_load(f"nvidia-h100-80gb-hbm3-charlm-{d}-summary.json") for d in ("cpu", "cuda"))
    return ("| `rnn-xp train charlm`, H100 machine | characters/s | held-out bits per character |\n|---|---:|---:|\n"
            f"| `--device cuda` | {cuda['chars_per_second']:,.0f} | {cuda['held_out_bits_per_char']:.3f} |\n"
            f"| `--device cpu` | {cpu['chars_per_second']:,.0f} | {cpu['held_out_bits_per_char']:.3f} |\n")


def dask() -> str:
    data = _load("amd-epyc-dask-local2.json")
    lines = [f"`rnn-xp bench --dask local:2`, {data['worker_cpu']}, {data['date'][:10]}, one thread per worker.", "",
             "| T | B | H | workers | wall ms | samples·steps/s | speed-up | compute | communication | other |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        c = r["case"]
        lines.append(f"| {c['seq_len']} | {c['batch']} | {c['hidden']} | {r['workers']} | {r['wall_s'] * 1e3:.1f} | "
                     f"{r['samples_per_s']:,.0f} | {r['speedup_vs_1_worker']:.2f}× | {r['compute_share']:.0%} | "
                     f"{r['communication_share']:.1%} | {r['other_share']:.0%} |")
    return "\n".join(lines) + "\n"


def tables() -> dict[str, Callable[[], str]]:
    """Every generated table, by name."""
    return {
        "cpu-headline": lambda: headline(_cpu_runs(), "cpu"),
        "cpu-machine": lambda: machine(_load(CPU_PEERS)) + "\n",
        "cpu-rows": lambda: rows_table(_load(CPU_PEERS), "cpu"),
        "cpu-in-process-headline": lambda: headline([_load(CPU_IN_PROCESS)], "cpu"),
        "first-call": first_call,
        "quick-machine": lambda: machine(_load(CPU_QUICK)) + "\n",
        "quick-verdict": lambda: verdict_block(_load(CPU_QUICK)),
        "gpu-headline": lambda: headline([_load(GPU_SWEEP)], "cuda"),
        "gpu-machine": lambda: machine(_load(GPU_SWEEP)) + "\n",
        "gpu-rows": lambda: rows_table(_load(GPU_SWEEP), "cuda"),
        "gpu-verdict": lambda: verdict_block(_load(GPU_SWEEP)),
        "gpu-training": gpu_training,
        "loop-rule": loop_rule,
        "training": training,
        "dask": dask,
    }


def generate(out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, render in tables().items():
        path = out / f"{name}.md"
        text = render()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


MARKED = re.compile(r"(<!-- bench-table: ([\w-]+) -->\n)(.*?)(<!-- /bench-table -->)", re.S)


def readme_with_tables(text: str) -> str:
    """``text`` with every marked table replaced by what it renders now."""
    rendered = tables()
    return MARKED.sub(lambda m: m.group(1) + rendered[m.group(2)]() + m.group(4), text)


def _builder_inited(app: Any) -> None:
    generate()


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    if sys.argv[1:] != ["--readme"]:
        sys.exit("usage: python docs/_ext/bench_tables.py --readme   (rewrites README.md's bench tables)")
    sys.path.insert(0, str(ROOT))
    README.write_text(readme_with_tables(README.read_text()))
    print(f"rewrote the bench tables of {README}")
