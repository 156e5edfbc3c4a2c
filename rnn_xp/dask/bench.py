"""``rnn-xp bench --dask ADDRESS|local:N``: batch-inference throughput of :func:`rnn_xp.dask.rnn_forward`
against the number of workers, with the share of each call spent computing and communicating.

For k = 1, 2, 4, ... up to the cluster's N workers, a batch of B sequences is generated on the first k workers
(k chunks, one per worker) and kept there, as data read where the workers are. A timed call is
``rnn_forward(x, params)`` persisted on those k workers: the parameters go out once per worker, every chunk runs
the NumPy loop of its worker, and the results stay where they were computed (as a pipeline writing them out
would). The calls for every k, and a reference — the whole batch through :func:`rnn_xp.functional.rnn_forward`
inside one worker, with no Dask in between — alternate in blocks, so all see the same machine drift; medians
are reported. Dask's task stream splits each call into compute (per worker, the busiest counted) and transfers
between workers; the rest of the wall time is scheduling and the client's round trip.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from distributed import Client, get_task_stream, wait

import rnn_xp
from rnn_xp.dask.cluster import ClusterTarget, connect
from rnn_xp.dask.forward import rnn_forward
from rnn_xp.functional import rnn_forward as single_forward

SCHEMA = "rnn_xp.dask-scaling/1"


@dataclass(frozen=True)
class ScalingConfig:
    seq_lens: tuple[int, ...] = (100,)
    batches: tuple[int, ...] = (2048,)
    hidden: tuple[int, ...] = (256,)
    input_size: int = 64
    dtype: str = "float32"
    max_seconds: float = 10.0  # timing budget per case, all worker counts together
    min_repeats: int = 3


def worker_counts(total: int) -> list[int]:
    """1, 2, 4, ... below ``total``, then ``total``."""
    counts = [1 << i for i in range(total.bit_length()) if 1 << i < total]
    return [*counts, total]


def run_scaling(client: Client, config: ScalingConfig, target: str) -> dict[str, Any]:
    # Client.nthreads asks the scheduler each time; scheduler_info() can return a cached copy without workers.
    threads = client.nthreads()
    workers = sorted(threads)
    counts = worker_counts(len(workers))
    load_before = os.getloadavg()
    rows = []
    for seq_len, batch, hidden in itertools.product(config.seq_lens, config.batches, config.hidden):
        rows.extend(_measure_case(client, workers, counts, config, seq_len, batch, hidden))
    cpu, environment = client.run(_worker_description, workers=[workers[0]])[workers[0]]
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "workers": len(workers),
        "threads_per_worker": sorted(set(threads.values())),
        "worker_cpu": cpu,
        "worker_environment": environment,
        "client_cpu_count": os.cpu_count(),
        # Other processes on the machine take cores from the workers: the 1-minute load before and after the run.
        "client_load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "versions": _versions(),
        "config": asdict(config),
        "rows": rows,
    }


def _measure_case(client: Client, workers: list[str], counts: list[int], config: ScalingConfig, seq_len: int,
                  batch: int, hidden: int) -> list[dict[str, Any]]:
    case = {"seq_len": seq_len, "batch": batch, "hidden": hidden, "input_size": config.input_size}
    params = rnn_xp.RNN(config.input_size, hidden, dtype=config.dtype, seed=0).state_dict()
    inputs = {}
    for k in counts:  # the batch generated on, and kept on, the first k workers: one chunk each
        chunks = tuple(len(part) for part in np.array_split(np.arange(batch), k))
        x = da.random.default_rng(0).standard_normal((seq_len, batch, config.input_size), chunks=(seq_len, chunks,
                                                    config.input_size), dtype=np.float64).astype(config.dtype)
        inputs[k] = client.persist(x, workers=workers[:k])
        wait(inputs[k], timeout=600)
    reference = client.submit(_single_process_seconds, params, seq_len, batch, config.input_size, config.dtype,
                              workers=[workers[0]], pure=False)
    samples: dict[int, list[dict[str, float]]] = {k: [] for k in counts}
    reference_seconds: list[float] = [reference.result()]  # the first call also warms the worker up
    for k in counts:
        _timed_call(client, inputs[k], params, workers[:k])  # warm-up, not counted
    started = time.perf_counter()
    while True:
        for k in counts:
            samples[k].append(_timed_call(client, inputs[k], params, workers[:k]))
        reference_seconds.append(
            client.submit(_single_process_seconds, params, seq_len, batch, config.input_size, config.dtype,
                          workers=[workers[0]], pure=False).result()
        )
        done = len(samples[counts[0]])
        if done >= config.min_repeats and time.perf_counter() - started >= config.max_seconds:
            break
    del inputs
    single = statistics.median(reference_seconds)
    param_bytes = sum(int(v.nbytes) for v in params.values())
    item = np.dtype(config.dtype).itemsize
    rows = []
    base_wall = statistics.median(s["wall_s"] for s in samples[counts[0]])
    for k in counts:
        wall = statistics.median(s["wall_s"] for s in samples[k])
        compute = statistics.median(s["compute_s"] for s in samples[k])
        transfer = statistics.median(s["transfer_s"] for s in samples[k])
        used = statistics.median(s["workers_used"] for s in samples[k])
        cpu_share = statistics.median(s["cpu_per_compute_s"] for s in samples[k])
        shard = math.ceil(batch / k)
        rows.append({
            "case": case,
            "workers": k,
            "repeats": len(samples[k]),
            "wall_s": wall,
            "samples_per_s": batch * seq_len / wall,
            "speedup_vs_1_worker": base_wall / wall,
            "efficiency": base_wall / wall / k,
            "busiest_worker_compute_s": compute,
            "workers_computing": used,
            "worker_cpu_per_compute_s": cpu_share,
            "transfer_s": transfer,
            "compute_share": compute / wall,
            "communication_share": transfer / wall,
            "other_share": max(0.0, 1.0 - (compute + transfer) / wall),
            "single_worker_no_dask_s": single,
            "dask_overhead_vs_no_dask": wall * k / single,
            "param_bytes_per_worker": param_bytes,
            "x_bytes_per_shard": seq_len * shard * config.input_size * item,
            "out_bytes_per_shard": seq_len * shard * hidden * item,
            "gflop_per_shard": 2 * seq_len * shard * hidden * (config.input_size + hidden) / 1e9,
        })
    return rows


def _timed_call(client: Client, x: Any, params: dict[str, Any], workers: list[str]) -> dict[str, float]:
    cpu_before = client.run(time.process_time, workers=workers)
    with get_task_stream(client=client) as stream:
        started = time.perf_counter()
        out, h_n = rnn_forward(x, params)
        results = client.persist([out, h_n], workers=workers)
        wait(results, timeout=600)
        wall = time.perf_counter() - started
    cpu_after = client.run(time.process_time, workers=workers)
    busy: dict[str, float] = {}
    transfer = 0.0
    for task in stream.data:
        for span in task.get("startstops", ()):
            seconds = float(span["stop"] - span["start"])
            if span["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + seconds
            elif span["action"] == "transfer":
                transfer += seconds
    del results
    cpu = sum(cpu_after[w] - cpu_before[w] for w in workers)
    return {
        "wall_s": wall,
        "compute_s": max(busy.values(), default=0.0),
        "transfer_s": transfer,
        "workers_used": float(sum(1 for seconds in busy.values() if seconds > 0.1 * max(busy.values()))),
        # CPU seconds the workers got per second of computing: 1.0 means each had a core of its own.
        "cpu_per_compute_s": cpu / max(sum(busy.values()), 1e-9),
    }


def _single_process_seconds(params: dict[str, Any], seq_len: int, batch: int, input_size: int, dtype: str) -> float:
    """Runs on a worker: the whole batch through the functional forward, no Dask in between."""
    x = np.random.default_rng(0).standard_normal((seq_len, batch, input_size)).astype(dtype)
    started = time.perf_counter()
    single_forward(x, params)
    return time.perf_counter() - started


def _worker_description() -> tuple[str, dict[str, str | None]]:
    from rnn_xp.benchmark.machine import cpu_model

    threads = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return cpu_model(), threads


def _versions() -> dict[str, str]:
    import dask
    import distributed

    return {"rnn_xp": rnn_xp.__version__, "numpy": np.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# rnn-xp bench --dask {result['target']}, {result['date']}",
        "",
        f"{result['workers']} workers × {result['threads_per_worker']} thread(s) on {result['worker_cpu']} "
        f"(worker BLAS threads: {result['worker_environment'].get('OPENBLAS_NUM_THREADS')}); "
        f"{result['config']['dtype']}; rnn_forward persisted on the first k workers, x already there; medians. "
        f"Load average (1 min) on the client's machine before/after: {result['client_load_average_1min']} "
        f"on {result['client_cpu_count']} logical CPUs.",
        "",
        "| T | B | H | workers | repeats | wall ms | samples·steps/s | speedup | efficiency "
        "| busiest worker compute ms | CPU per compute s | compute | communication | other "
        "| no-Dask single worker ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        case = row["case"]
        lines.append(
            f"| {case['seq_len']} | {case['batch']} | {case['hidden']} | {row['workers']} | {row['repeats']} | "
            f"{row['wall_s'] * 1e3:.1f} | {row['samples_per_s']:,.0f} | {row['speedup_vs_1_worker']:.2f}× | "
            f"{row['efficiency']:.0%} | {row['busiest_worker_compute_s'] * 1e3:.1f} | "
            f"{row['worker_cpu_per_compute_s']:.2f} | {row['compute_share']:.0%} | "
            f"{row['communication_share']:.1%} | "
            f"{row['other_share']:.0%} | {row['single_worker_no_dask_s'] * 1e3:.1f} |"
        )
    first = result["rows"][0]
    lines += [
        "",
        f"Per worker and call: parameters {first['param_bytes_per_worker'] / 1e6:.2f} MB; per shard at 1 worker: "
        f"x {first['x_bytes_per_shard'] / 1e6:.1f} MB, out {first['out_bytes_per_shard'] / 1e6:.1f} MB, "
        f"{first['gflop_per_shard']:.1f} GFLOP.",
        "compute: the busiest worker's compute time / wall; communication: transfers between workers / wall; "
        "other: scheduling, the client's round trip. CPU per compute s: CPU seconds the workers got per second "
        "they spent computing (1.00: a core each; less: other processes took the cores).",
    ]
    return "\n".join(lines) + "\n"


def save(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    temporary = json_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=1) + "\n")
    temporary.replace(json_path)
    md_path.write_text(markdown(result))
    return [json_path, md_path]


def run(target: ClusterTarget, config: ScalingConfig, out: Path, name: str | None) -> list[Path]:
    """Measure on ``target`` and write ``{name}.json``/``.md`` under ``out`` (default name: the workers' CPU, the
    word dask and the target, e.g. ``amd-epyc-dask-local2``). Prints the table."""
    from rnn_xp.benchmark.results import file_stem

    with connect(target) as client:
        result = run_scaling(client, config, target.text)
    stem = name or f"{file_stem(result['worker_cpu'])}-dask-{target.label}"
    paths = save(result, out, stem)
    print(markdown(result))
    return paths


def run_cli(options: Any) -> int:
    """``rnn-xp bench --dask``: the sizes from the bench options (one case per combination), then :func:`run`."""
    defaults = ScalingConfig()
    config = ScalingConfig(
        seq_lens=tuple(options.seq_lens or defaults.seq_lens),
        batches=tuple(options.batches or defaults.batches),
        hidden=tuple(options.hidden or defaults.hidden),
        input_size=options.input_size,
        dtype=options.dtype,
        max_seconds=options.max_seconds if options.max_seconds is not None else defaults.max_seconds,
    )
    for path in run(options.dask, config, options.out, options.name):
        print(f"wrote {path}")
    return 0
