"""One run on a lent GPU: every check that needs the device, in order of value, each under a time cap, 8 minutes in
all, at most 8 files back, a summary printed last that sets each measurement beside the number predicted for it here,
before the run.

    On the development machine first:  ../shared/tools/gpu-wheels.sh   (array-api-compat/-strict into .whl/)
    Device run: carry [".whl"], timeout_s 560, command:   bash tools/gpu_session.sh
    Here, without a GPU:  python tools/gpu_session.py --dry-run --out DIR   (the stages against a stand-in device)

Stages (cap in seconds, 450 in all): setup 15 (the wheels), device 15 (nvidia-smi, attributes, `rnn-xp info`), tests
150 (every GPU test, RNN_XP_REQUIRE_GPU=1: a skipped GPU test fails), sanitizer 60 (compute-sanitizer memcheck and
racecheck on bench/gpu_probe.py smoke: every kernel once), probes 70 (latency slopes at 3 T against cuDNN, the path
crossover, the split-K flag), sweep 95 (bench/gpu_sweep.py: 20 rows, forward and training, CPU and GPU), ncu 45
(Nsight Compute on the register kernel at H=128, B=64 and the persistent kernel at H=1024, B=64). A stage that
reaches its cap is sent SIGINT (the sweep then writes the rows it finished), then killed; the next stage starts. A
stage gets at most the time left of the 8 minutes.

Files in $OUT: device.txt, gpu-tests.txt, sanitizer.txt, probes.json, sweep.json, ncu.txt, summary.txt, session.log.
Exit status: 0 when every GPU test passed and the sanitizers found nothing, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480
SITE = "/tmp/rnn-xp-site"
PY = "python3"

# -- what the run should find, written before it (H200; H100 figures from bench/results/nvidia-h100-80gb-hbm3-*) --
PREDICTIONS: dict[str, Any] = {
    "device": {"name": "NVIDIA H200", "multiprocessors": 132, "compute_capability": "9.0",
               "shared_per_block_optin": 232448},
    "tests": {"failed": 0, "skipped": 0, "passed_at_least": 409},
    "sanitizer": {"memcheck_errors": 0, "racecheck_hazards": 0},
    # (hidden, batch): forward us a step (slope over T = 32, 128, 512) for rnn_xp and cuDNN, and rnn_xp's fixed cost
    # of a call in ms (the intercept; 0.231 ms on the H100 before the host-side cuts, cuDNN 0.116).
    "latency": {
        (128, 1): {"rnn_xp": 0.20, "cudnn": 0.55, "fixed_ms": 0.08},  # register kernel; H100: 1.01 vs 0.58
        (128, 64): {"rnn_xp": 0.20, "cudnn": 0.60, "fixed_ms": 0.08},
        (512, 64): {"rnn_xp": 3.8, "cudnn": 19.0, "fixed_ms": 0.08},  # persistent kernel, unchanged: H100 3.8
        (1024, 1): {"rnn_xp": 3.6, "cudnn": 13.0, "fixed_ms": 0.08},
        (1024, 64): {"rnn_xp": 8.0, "cudnn": 19.0, "fixed_ms": 0.08},  # the 4 us target: a miss predicted
        (2048, 64): {"rnn_xp": 20.0, "cudnn": 40.0, "fixed_ms": 0.10},  # per-step path, host ~12 us a step
        (4096, 1): {"rnn_xp": 19.0, "cudnn": 33.0, "fixed_ms": 0.10},  # per-step: 64 MB of W_hh from HBM a step
    },
    # The fastest path at T=128, which the launch model should also choose.
    "crossover": {(128, 64): "registers", (256, 256): "registers", (512, 256): "persistent",
                  (1024, 64): "persistent", (1024, 256): "per_step", (1536, 64): "per_step",
                  (2048, 8): "persistent", (2048, 64): "per_step"},
    # Training step time with the split-K flag on over off, and cuDNN's, at (T, B, H).
    "split_k": {(1024, 256, 128): {"on_over_off": 0.5, "cudnn_ms": 3.0},
                (1024, 64, 128): {"on_over_off": 0.8, "cudnn_ms": 1.5},
                (256, 256, 512): {"on_over_off": 0.9, "cudnn_ms": 12.0}},
    # The reduced sweep: forward rows at or under cuDNN's time (of 20), forward rows with B <= 8 at or under half of
    # it (of 8: the H=128 rows at T=64 stay over half, a fixed cost of ~0.08 ms against cuDNN's ~0.15), training rows
    # at or under cuDNN's time (of 20: T>=256 at B=256, H=128 stay over it, the weight gradients with split-K off),
    # and the GPU/CPU crossover in B*H.
    "sweep": {"forward_within_1x": 20, "forward_small_batch_within_half": 6, "train_within_1x": 18,
              "crossover_bh": 1024},
    # Nsight Compute: the warp-stall reasons that lead, and the kernel time at the probe's size (T=64).
    "ncu": {"registers": {"top_stalls": ("barrier", "short_scoreboard"), "forward_us": 15.0},
            "persistent": {"top_stalls": ("long_scoreboard", "barrier"), "forward_us": 520.0}},
}


@dataclass
class Stage:
    """A stage: shell commands run one after another under ``cap_s`` in all, their output appended to ``log`` (a
    file of $OUT, or None: session.log only); ``collect`` then turns the work folder into $OUT files."""

    name: str
    cap_s: int
    commands: list[str]
    log: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    collect: Callable[[Path, Path], None] | None = None


def _probes_json(work: Path, out: Path) -> None:
    merged = {}
    for name in ("latency", "crossover", "split-k"):
        path = work / f"{name}.json"
        merged[name] = json.loads(path.read_text()) if path.exists() else None
    (out / "probes.json").write_text(json.dumps(merged, indent=1) + "\n")


def _copy(name: str) -> Callable[[Path, Path], None]:
    def collect(work: Path, out: Path) -> None:
        if (work / name).exists():
            (out / name).write_bytes((work / name).read_bytes())

    return collect


def stages(work: Path) -> list[Stage]:
    """The stages in order of value; ``work`` holds intermediate files that do not go back."""
    ncu = ("ncu --clock-control none --target-processes all --launch-skip 2 --launch-count 2 "
           "--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats")
    profile = []
    for kind, hidden in (("registers", 128), ("persistent", 1024)):
        report = work / f"ncu-{kind}"
        profile += [
            f"{ncu} --kernel-name regex:{kind} -o {report} -f {PY} bench/gpu_probe.py ncu-target --hidden {hidden} "
            f"--batch 64 --steps 64 > {report}.log 2>&1 || (echo 'ncu failed:'; tail -n 20 {report}.log)",
            f"echo '== {kind} kernels, H={hidden}, B=64, T=64'; ncu --import {report}.ncu-rep --page details",
            f"ncu --import {report}.ncu-rep --page raw --csv > {report}-raw.csv && "
            f"{PY} tools/ncu_stalls.py {report}-raw.csv",
        ]
    sanitizer = "compute-sanitizer --error-exitcode 9 --print-limit 20"
    return [
        Stage("setup", 15, [f"{PY} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
                            f"--target {SITE} .whl/*.whl"]),
        Stage("device", 15, [
            "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,"
            "temperature.gpu,power.draw --format=csv",
            f"{PY} -c 'import cupy, json; d = cupy.cuda.Device(0); a = d.attributes; "
            "p = cupy.cuda.runtime.getDeviceProperties(0); n = p[\"name\"]; "
            "print(json.dumps({\"name\": n.decode() if isinstance(n, bytes) else n, "
            "\"multiprocessors\": a[\"MultiProcessorCount\"], \"compute_capability\": d.compute_capability, "
            "\"shared_per_block_optin\": a[\"MaxSharedMemoryPerBlockOptin\"], \"l2_bytes\": a[\"L2CacheSize\"], "
            "\"cupy\": cupy.__version__}))'",
            f"{PY} -m rnn_xp info",
        ], log="device.txt"),
        Stage("tests", 150, [f"{PY} -m pytest -q -m gpu tests/ -p no:cacheprovider -rfEs --timeout=100"],
              log="gpu-tests.txt", env={"RNN_XP_REQUIRE_GPU": "1"}),
        Stage("sanitizer", 60, [f"{sanitizer} --tool memcheck {PY} bench/gpu_probe.py smoke",
                                f"{sanitizer} --tool racecheck {PY} bench/gpu_probe.py smoke"], log="sanitizer.txt"),
        Stage("probes", 70, [f"{PY} bench/gpu_probe.py {probe} --out {work}"
                             for probe in ("latency", "crossover", "split-k")], collect=_probes_json),
        Stage("sweep", 95, [f"{PY} bench/gpu_sweep.py --out {work} --max-seconds 0.12"], collect=_copy("sweep.json")),
        Stage("ncu", 45, profile, log="ncu.txt"),
    ]


OUT_FILES = ("device.txt", "gpu-tests.txt", "sanitizer.txt", "probes.json", "sweep.json", "ncu.txt", "summary.txt",
             "session.log")


# -- running ---------------------------------------------------------------------------------------------------------
def run_command(command: str, *, cap_s: float, env: dict[str, str], log: Any) -> tuple[int, float]:
    """``command`` in bash (pipefail) in its own process group, output to ``log``; at ``cap_s`` SIGINT to the
    group, 5 s later SIGKILL. Returns (exit status, seconds); 124 when the cap was reached."""
    started = time.monotonic()
    process = subprocess.Popen(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = process.wait(timeout=max(1.0, cap_s))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        status = 124
    return status, time.monotonic() - started


def run_stages(out: Path, work: Path, *, runner: Callable[..., tuple[int, float]] = run_command,
               budget_s: float = BUDGET_S) -> list[dict[str, Any]]:
    """Every stage in order, each under its cap and the time left; returns what happened to each."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{SITE}:{ROOT}"}
    started = time.monotonic()
    record = []
    with open(out / "session.log", "a") as session:
        for stage in stages(work):
            left = budget_s - (time.monotonic() - started)
            cap = min(stage.cap_s, left)
            entry: dict[str, Any] = {"stage": stage.name, "cap_s": stage.cap_s, "statuses": [], "seconds": 0.0}
            if cap < 5:
                entry["skipped"] = "out of time"
                record.append(entry)
                continue
            log = open(out / stage.log, "a") if stage.log else session
            try:
                for command in stage.commands:
                    remaining = cap - entry["seconds"]
                    if remaining < 1:
                        entry["statuses"].append(124)
                        break
                    print(f"\n[{time.strftime('%H:%M:%S')}] {stage.name}: {command}", file=session, flush=True)
                    if log is not session:
                        print(f"$ {command}", file=log, flush=True)
                    status, seconds = runner(command, cap_s=remaining, env={**env, **stage.env}, log=log)
                    entry["statuses"].append(status)
                    entry["seconds"] += seconds
            finally:
                if log is not session:
                    log.close()
            if stage.collect is not None:
                stage.collect(work, out)
            print(f"[{time.strftime('%H:%M:%S')}] {stage.name}: statuses {entry['statuses']} in "
                  f"{entry['seconds']:.0f} s (cap {stage.cap_s})", file=session, flush=True)
            record.append(entry)
    return record


# -- the summary -----------------------------------------------------------------------------------------------------
def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarize(out: Path, record: list[dict[str, Any]]) -> list[str]:
    """The lines of summary.txt: per stage what it found, beside PREDICTIONS."""
    lines = ["rnn_xp device run: measured (predicted before the run)", ""]
    for entry in record:
        state = entry.get("skipped") or ("cap reached" if 124 in entry["statuses"] else
                                         "ok" if all(s == 0 for s in entry["statuses"]) else
                                         f"exit {[s for s in entry['statuses'] if s]}")
        lines.append(f"{entry['stage']:9s} {entry['seconds']:5.0f} s of {entry['cap_s']:3d}: {state}")
    lines.append("")
    lines += _device_lines(out) + _test_lines(out) + _sanitizer_lines(out) + _probe_lines(out) + _sweep_lines(out)
    lines += _ncu_lines(out)
    return lines


def _device_lines(out: Path) -> list[str]:
    found = next((json.loads(line) for line in _read(out / "device.txt").splitlines() if line.startswith("{")), None)
    predicted = PREDICTIONS["device"]
    if found is None:
        return ["device: no attributes read (see device.txt)"]
    capability = predicted["compute_capability"].replace(".", "")
    return [f"device: {found['name']}, {found['multiprocessors']} SMs, sm_{found['compute_capability']}, "
            f"{found['shared_per_block_optin']} B shared a block, L2 {found['l2_bytes'] / 2**20:.0f} MiB "
            f"({predicted['name']}, {predicted['multiprocessors']} SMs, sm_{capability}, "
            f"{predicted['shared_per_block_optin']} B)"]


def pytest_counts(text: str) -> dict[str, int]:
    """The counts of pytest's last summary line ("3 failed, 406 passed, 2 skipped in 61.2s")."""
    tail = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)",
                                                    tail[-1] if tail else "")}


def _test_lines(out: Path) -> list[str]:
    counts = pytest_counts(_read(out / "gpu-tests.txt"))
    if not counts:
        return ["tests: no pytest summary (see gpu-tests.txt)"]
    predicted = PREDICTIONS["tests"]
    return [f"tests: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
            f"{counts.get('errors', counts.get('error', 0))} errors, {counts.get('skipped', 0)} skipped (all "
            f"{predicted['passed_at_least']}+ passed, {predicted['failed']} failed, {predicted['skipped']} skipped)"]


def sanitizer_counts(text: str) -> tuple[int | None, int | None]:
    """(memcheck errors, racecheck hazards) from compute-sanitizer's summaries, None where one is missing."""
    errors = re.findall(r"ERROR SUMMARY: (\d+) error", text)
    hazards = re.findall(r"RACECHECK SUMMARY: (\d+) hazard", text)
    memcheck = int(errors[0]) if errors else None
    racecheck = int(hazards[-1]) if hazards else (int(errors[1]) if len(errors) > 1 else None)
    return memcheck, racecheck


def _sanitizer_lines(out: Path) -> list[str]:
    memcheck, racecheck = sanitizer_counts(_read(out / "sanitizer.txt"))
    return [f"sanitizer: memcheck {memcheck} errors, racecheck {racecheck} hazards (0, 0)"]


def _probe_lines(out: Path) -> list[str]:
    probes = _json(out / "probes.json") or {}
    lines = []
    latency = probes.get("latency") or []
    if latency:
        lines.append("latency (us a step, forward; fixed ms a call): H B | rnn_xp (pred) | cuDNN (pred) | rnn_xp fixed"
                     " (pred) | cuDNN fixed | kernels")
    for row in latency:
        predicted = PREDICTIONS["latency"].get((row["hidden"], row["batch"]), {})
        lines.append(f"  {row['hidden']:5d} {row['batch']:4d} | {row['rnn_xp_us_per_step']:7.2f} "
                     f"({predicted.get('rnn_xp', float('nan')):.2f}) | {row['torch-cudnn_us_per_step']:7.2f} "
                     f"({predicted.get('cudnn', float('nan')):.2f}) | {row['rnn_xp_fixed_ms']:.3f} "
                     f"({predicted.get('fixed_ms', float('nan')):.3f}) | {row['torch-cudnn_fixed_ms']:.3f} | "
                     f"{row['kind']}")
    for row in probes.get("crossover") or []:
        predicted = PREDICTIONS["crossover"].get((row["hidden"], row["batch"]))
        times = ", ".join(f"{p} {row[p + '_ms']:.3f}" for p in ("registers", "persistent", "per_step")
                          if p + "_ms" in row)
        verdict = "chosen" if row["chosen"] == row["fastest"] else f"NOT chosen (auto: {row['chosen']})"
        lines.append(f"crossover H={row['hidden']} B={row['batch']}: fastest {row['fastest']} ({predicted}), "
                     f"{verdict}; ms: {times}")
    for row in probes.get("split-k") or []:
        predicted = PREDICTIONS["split_k"].get((row["steps"], row["batch"], row["hidden"]), {})
        ratio = row["train_ms_on"] / row["train_ms_off"]
        lines.append(f"split-k T={row['steps']} B={row['batch']} H={row['hidden']}: train {row['train_ms_off']:.3f}"
                     f" ms off, {row['train_ms_on']:.3f} on, on/off {ratio:.2f} ({predicted.get('on_over_off')}); "
                     f"cuDNN {row['torch-cudnn_train_ms']:.3f} ({predicted.get('cudnn_ms')})")
    return lines or ["probes: no results (see session.log)"]


def _sweep_lines(out: Path) -> list[str]:
    result = _json(out / "sweep.json")
    if not result or not result.get("rows"):
        return ["sweep: no rows (see session.log)"]
    predicted = PREDICTIONS["sweep"]
    cuda = [r for r in result["rows"] if r["device"] == "cuda" and "torch-cudnn" in r.get("speedup_vs", {})]

    def within(direction: str, limit: float, small: bool = False) -> str:
        rows = [r for r in cuda if r["direction"] == direction and (not small or r["case"]["batch"] <= 8)]
        met = [r for r in rows if 1 / r["speedup_vs"]["torch-cudnn"] <= limit]
        return f"{len(met)} of {len(rows)}"

    lines = [f"sweep: {len(result['rows'])} rows{' (interrupted)' if result.get('interrupted') else ''}; "
             f"rnn_xp time <= 1.0x cuDNN's: forward {within('fwd', 1.0)} ({predicted['forward_within_1x']}), "
             f"training {within('train', 1.0)} ({predicted['train_within_1x']}); <= 0.5x with B <= 8: forward "
             f"{within('fwd', 0.5, True)} ({predicted['forward_small_batch_within_half']})"]
    for row in cuda:
        ratio, case = 1 / row["speedup_vs"]["torch-cudnn"], row["case"]
        gpu_cpu = f"{row['gpu_over_cpu']:.1f}x" if row.get("gpu_over_cpu") else "-"
        lines.append(f"  {case['label']:28s} {row['direction']:5s} rnn_xp/cuDNN {ratio:5.2f}  GPU/CPU {gpu_cpu}")
    try:
        from rnn_xp.benchmark.verdict import verdict
    except ImportError:
        verdict = None
    if verdict is not None:
        items: list[str] = []
        for line in verdict(result)[1:]:  # the verdict's items: "- " and the first words, then wrapped lines
            if line.startswith("- "):
                items.append(line[2:])
            else:
                items[-1] += " " + line.strip()
        lines += [f"  {item}" for item in items if item.startswith(("GPU vs CPU", "vs torch-cudnn"))]
    lines.append(f"  predicted GPU/CPU crossover: B*H = {predicted['crossover_bh']}")
    return lines


def _ncu_lines(out: Path) -> list[str]:
    text = _read(out / "ncu.txt")
    stalls = [line.strip() for line in text.splitlines()
              if ("duration" in line and "issue active" in line) or line.startswith("  stalls")]
    predicted = PREDICTIONS["ncu"]
    return (["ncu (predicted top stalls: registers " + ", ".join(predicted["registers"]["top_stalls"])
             + "; persistent " + ", ".join(predicted["persistent"]["top_stalls"]) + "):"]
            + [f"  {line}" for line in stalls] if stalls else ["ncu: no kernel profiled (see ncu.txt)"])


# -- the stand-in device of the dry run --------------------------------------------------------------------------------
def fake_runner(work: Path, out: Path) -> Callable[..., tuple[int, float]]:
    """A runner that answers each stage's commands as the device would, in the same formats, without running them
    (the dry run: the stages, caps, files and summary are exercised; the commands' tools are checked to exist)."""

    def answer(command: str, *, cap_s: float, env: dict[str, str], log: Any) -> tuple[int, float]:
        words = shlex.split(command.split("|")[0].split(">")[0])
        scripts = [ROOT / w for w in words if w.endswith(".py") and not w.startswith("-")]
        missing = [str(s) for s in scripts if not s.exists()]
        if missing:
            print(f"missing: {missing}", file=log, flush=True)
            return 127, 0.0
        if "nvidia-smi" in command:
            print("name, driver_version\nNVIDIA H200, 580.159.04", file=log)
        elif "json.dumps" in command:
            print(json.dumps({"name": "NVIDIA H200", "multiprocessors": 132, "compute_capability": "90",
                              "shared_per_block_optin": 232448, "l2_bytes": 62914560, "cupy": "14.2.0"}), file=log)
        elif "pytest" in command:
            print("409 passed, 1414 deselected in 61.20s", file=log)
        elif "compute-sanitizer" in command:
            tool = "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)" if "racecheck" in command else \
                "ERROR SUMMARY: 0 errors"
            print(f"smoke: float32 H=33 path=auto split=None: registers kernels ran (2 blocks)\n========= {tool}",
                  file=log)
        elif "gpu_probe.py latency" in command:
            kinds = {128: "registers", 512: "persistent", 1024: "persistent", 2048: "per_step", 4096: "per_step"}
            rows = [{"hidden": h, "batch": b, "steps": [32, 128, 512], "kind": kinds[h],
                     "rnn_xp_us_per_step": p["rnn_xp"] * 1.1, "torch-cudnn_us_per_step": p["cudnn"],
                     "rnn_xp_fixed_ms": p["fixed_ms"], "torch-cudnn_fixed_ms": 0.12}
                    for (h, b), p in PREDICTIONS["latency"].items()]
            (work / "latency.json").write_text(json.dumps(rows))
        elif "gpu_probe.py crossover" in command:
            rows = [{"hidden": h, "batch": b, "steps": 128, "chosen": p, "fastest": p, f"{p}_ms": 1.0,
                     "per_step_ms": 2.0 if p != "per_step" else 1.0}
                    for (h, b), p in PREDICTIONS["crossover"].items()]
            (work / "crossover.json").write_text(json.dumps(rows))
        elif "gpu_probe.py split-k" in command:
            rows = [{"steps": t, "batch": b, "hidden": h, "train_ms_off": 2.0, "train_ms_on": 2.0 * p["on_over_off"],
                     "forward_ms_off": 0.5, "forward_ms_on": 0.5, "torch-cudnn_train_ms": p["cudnn_ms"]}
                    for (t, b, h), p in PREDICTIONS["split_k"].items()]
            (work / "split-k.json").write_text(json.dumps(rows))
        elif "gpu_sweep.py" in command:
            (work / "sweep.json").write_text(json.dumps(fake_sweep()))
        elif "ncu_stalls.py" in command:
            kind = "registers" if "registers" in command else "persistent"
            top = PREDICTIONS["ncu"][kind]["top_stalls"]
            print(f"rnn_forward_{kind}: duration 15.0, issue active 40%\n  stalls (cycles per issued instruction): "
                  f"{top[0]} 2.00 (40%), {top[1]} 1.00 (20%)", file=log)
        log.flush()
        return 0, 0.01

    return answer


def fake_sweep() -> dict[str, Any]:
    """A result document of bench/gpu_sweep.py's schema: two cases, CPU and GPU, forward and training."""
    rows = []
    for label, batch, hidden, cpu_s, gpu_s, cudnn_s in (("T64-B1-I64-H128", 1, 128, 5e-5, 9e-5, 1.5e-4),
                                                         ("T256-B64-I64-H2048", 64, 2048, 0.3, 5e-3, 1e-2)):
        case = {"seq_len": int(label[1:label.index("-")]), "batch": batch, "input_size": 64, "hidden": hidden,
                "num_layers": 1, "bidirectional": False, "with_lengths": False, "label": label}
        for direction in ("fwd", "train"):
            rows.append({"device": "cpu", "direction": direction, "case": case, "flops": 1.0, "speedup_vs": {},
                         "results": {"rnn_xp": {"median_s": cpu_s}}, "gpu_over_cpu": None})
            rows.append({"device": "cuda", "direction": direction, "case": case, "flops": 1.0,
                         "results": {"rnn_xp": {"median_s": gpu_s}, "torch-cudnn": {"median_s": cudnn_s}},
                         "speedup_vs": {"torch-cudnn": cudnn_s / gpu_s}, "gpu_over_cpu": cpu_s / gpu_s})
    return {"schema": "rnn-xp-bench/1", "rows": rows, "interrupted": False, "missing_peers": []}


def check_plan() -> list[str]:
    """Problems with the plan itself: caps over the budget, more files than come back, a stage without a
    prediction."""
    problems = []
    plan = stages(Path(tempfile.gettempdir()))
    total = sum(stage.cap_s for stage in plan)
    if total >= BUDGET_S:
        problems.append(f"stage caps sum to {total} s, not under {BUDGET_S}")
    files = {stage.log for stage in plan if stage.log} | {"probes.json", "sweep.json", "summary.txt", "session.log"}
    if len(files) > 8 or not files <= set(OUT_FILES):
        problems.append(f"files back: {sorted(files)} (at most 8, as OUT_FILES)")
    for name in ("device", "tests", "sanitizer", "latency", "crossover", "split_k", "sweep", "ncu"):
        if name not in PREDICTIONS:
            problems.append(f"no prediction for {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["all"], help="every stage (the only choice)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/rnn-xp-gpu-out"))
    parser.add_argument("--dry-run", action="store_true", help="answer the stages from a stand-in device")
    options = parser.parse_args(argv)
    problems = check_plan()
    if problems:
        print("the plan is wrong: " + "; ".join(problems))
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rnn-xp-gpu-") as folder:
        work = Path(folder)
        runner = fake_runner(work, options.out) if options.dry_run else run_command
        record = run_stages(options.out, work, runner=runner)
    lines = summarize(options.out, record)
    (options.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    counts = pytest_counts(_read(options.out / "gpu-tests.txt"))
    tests_passed = bool(counts.get("passed")) and not counts.get("failed") and not counts.get("errors", 0) + \
        counts.get("error", 0)
    memcheck, racecheck = sanitizer_counts(_read(options.out / "sanitizer.txt"))
    return 0 if tests_passed and memcheck == 0 and racecheck == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
