"""What a sweep says about the machine, in a few lines: the verdict ``rnn-xp bench`` ends with.

For every peer in the result (whatever peers were registered and installed, by name) and every device: on how many
rows rnn_xp is faster, the geometric mean of the speed-up, where it wins most and where it does not (by batch, by
hidden size, the rows it loses); with a GPU, where the GPU overtakes the CPU; how much of the machine's GEMM peak
rnn_xp reached; which timings are too unstable to trust; whether other processes competed for the CPUs during the
sweep; which peers were not measured and why.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Iterable
from typing import Any

from rnn_xp.benchmark.cpu_load import is_busy
from rnn_xp.benchmark.timing import UNSTABLE_QUARTILE_RATIO, is_unstable

WIDTH = 118
LISTED = 3  # rows named per list before "+N more"


def verdict(result: dict[str, Any]) -> list[str]:
    """The verdict as lines of text (wrapped to :data:`WIDTH`), from a result document of ``run_sweep``."""
    rows = result["rows"]
    items: list[str] = []
    if result.get("interrupted"):
        items.append("interrupted (Ctrl-C): what follows covers only the rows finished before it.")
    for device in _ordered(row["device"] for row in rows):
        device_rows = [row for row in rows if row["device"] == device]
        for peer in sorted({name for row in device_rows for name in row["results"] if name != "rnn_xp"}):
            items.append(_against_peer(device_rows, peer, device))
    items.append(_gpu_over_cpu(result))
    items += _peak(result)
    items += _unstable(rows)
    items += _busy(result)
    items += [
        f"not measured: {m['peer']} on {m['device']} ({m['reason']})." for m in result.get("missing_peers", [])
    ]
    lines = ["Verdict (x = the other's time / rnn_xp's time: above 1, rnn_xp is faster):"]
    for item in items:
        lines += textwrap.wrap(item, WIDTH, initial_indent="- ", subsequent_indent="    ", break_on_hyphens=False)
    return lines


def _against_peer(rows: list[dict[str, Any]], peer: str, device: str) -> str:
    timed = [row for row in rows if peer in row["speedup_vs"] and not _row_unstable(row, peer)]
    left_out = sum(1 for row in rows if peer in row["speedup_vs"]) - len(timed)
    if not timed:
        statuses = sorted({row["results"][peer].get("status", "?") for row in rows if peer in row["results"]})
        reasons = sorted({row["results"][peer].get("reason", "") for row in rows if peer in row["results"]} - {""})
        why = "unstable timings only" if left_out else ", ".join(statuses) + (f": {'; '.join(reasons)}" if reasons
                                                                                   else "")
        return f"vs {peer} ({device}): no comparable row ({why})."
    ratios = [row["speedup_vs"][peer] for row in timed]
    faster = sum(1 for r in ratios if r > 1)
    text = f"vs {peer} ({device}): rnn_xp faster on {faster} of {len(timed)} rows, geometric mean {_x(ratios)}"
    by_direction = {d: [row["speedup_vs"][peer] for row in timed if row["direction"] == d] for d in ("fwd", "train")}
    if all(by_direction.values()):
        text += f" (forward {_x(by_direction['fwd'])}, forward+backward {_x(by_direction['train'])})"
    for key, symbol in (("batch", "B"), ("hidden", "H")):
        if len({row["case"][key] for row in timed}) > 1:
            text += "; " + _by(timed, peer, key, symbol)
    slower = sorted((row for row in timed if row["speedup_vs"][peer] <= 1), key=lambda row: row["speedup_vs"][peer])
    text += ("; slower on " + _listing(slower, lambda row: row["speedup_vs"][peer])) if slower else "; never slower"
    if left_out:
        text += f" ({left_out} unstable rows left out)"
    return text + "."


def _by(rows: list[dict[str, Any]], peer: str, key: str, symbol: str) -> str:
    groups: dict[int, list[float]] = {}
    for row in rows:
        groups.setdefault(row["case"][key], []).append(row["speedup_vs"][peer])
    return f"by {key} " + ", ".join(f"{symbol}={value} {_x(groups[value])}" for value in sorted(groups))


def _gpu_over_cpu(result: dict[str, Any]) -> str:
    cuda = [row for row in result["rows"] if row["device"] == "cuda"]
    both = [row for row in cuda if row.get("gpu_over_cpu")]
    if not cuda:
        return "GPU vs CPU: not measured, no GPU in this run (with CuPy and a GPU, `rnn-xp bench` times both)."
    if not both:
        return "GPU vs CPU: not measured, this run timed the GPU only (`--device all` times both)."
    gains = [row["gpu_over_cpu"] for row in both]
    gpu_wins = [row for row in both if row["gpu_over_cpu"] > 1]
    best = max(both, key=lambda row: row["gpu_over_cpu"])
    text = (f"GPU vs CPU (rnn_xp on each): the GPU is faster on {len(gpu_wins)} of {len(both)} rows, geometric mean "
            f"{_x(gains)}, up to {best['gpu_over_cpu']:.1f}x at {_label(best)}")
    cpu_wins = sorted((row for row in both if row["gpu_over_cpu"] <= 1), key=lambda row: row["gpu_over_cpu"])
    if cpu_wins:
        text += "; the CPU is faster on " + _listing(cpu_wins, lambda row: row["gpu_over_cpu"])
    return text + "; " + _crossover(both) + "."


def _crossover(rows: list[dict[str, Any]]) -> str:
    """The smallest work per step (B·H) from which the GPU wins every row measured, at every T."""
    work = sorted({row["case"]["batch"] * row["case"]["hidden"] for row in rows})
    threshold = None
    for value in reversed(work):
        if all(row["gpu_over_cpu"] > 1 for row in rows if row["case"]["batch"] * row["case"]["hidden"] >= value):
            threshold = value
        else:
            break
    if threshold is None:
        return f"the CPU still wins a row at the largest B·H measured ({work[-1]})"
    if threshold == work[0]:
        return "the GPU wins every row measured"
    return f"crossover: from B·H = {threshold} per step the GPU wins every row (at every T measured)"


def _peak(result: dict[str, Any]) -> list[str]:
    items = []
    for device, peak in result.get("gemm_peak_gflops", {}).items():
        summary = result.get("gemm_peak", {}).get(device, {})
        text = f"GEMM peak ({device}): {peak:.0f} GFLOP/s"
        if summary.get("samples", 0) > 1:
            text += (f", the best of {summary['samples']} samples over the run (n={summary.get('size', '?')} matmuls; "
                     f"median {summary['median_gflops']:.0f}, lowest {summary['lowest_gflops']:.0f}")
            text += ": the machine was busy at times)" if summary["lowest_gflops"] < 0.7 * peak else ")"
        ours = [
            (row["results"]["rnn_xp"]["fraction_of_peak"], row)
            for row in result["rows"]
            if row["device"] == device and "fraction_of_peak" in row["results"].get("rnn_xp", {})
            and not _entry_unstable(row["results"]["rnn_xp"])
        ]
        if ours:
            fractions = [fraction for fraction, _ in ours]
            top = max(ours, key=lambda pair: pair[0])
            text += (f"; rnn_xp reached {_percent(min(fractions))}-{_percent(top[0])} of it (median "
                     f"{_percent(statistics.median(fractions))}, most at {_label(top[1])}): a step is a GEMM of B "
                     "rows that waits for the step before, so small batches are bound by latency, not arithmetic")
            above = sum(1 for fraction in fractions if fraction > 1)
            if above:
                text += f". {above} rows exceed the peak: it was measured too low, treat the fractions as suspect"
        items.append(text + ".")
    return items


def _unstable(rows: list[dict[str, Any]]) -> list[str]:
    flagged = [
        (name, row, entry)
        for row in rows
        for name, entry in row["results"].items()
        if "median_s" in entry and _entry_unstable(entry)
    ]
    if not flagged:
        return []
    shown = ", ".join(
        f"{name} {_label(row)} (quartiles {entry['p25_s'] * 1e3:.3g}, {entry['median_s'] * 1e3:.3g}, "
        f"{entry['p75_s'] * 1e3:.3g} ms)"
        for name, row, entry in flagged[:LISTED]
    )
    more = f" (+{len(flagged) - LISTED} more)" if len(flagged) > LISTED else ""
    return [
        f"unstable: {len(flagged)} timings whose quartiles are more than {UNSTABLE_QUARTILE_RATIO:g}x apart (marked "
        f"⚠ in the table, left out of the comparisons above): {shown}{more}. Rerun on a quieter machine or with a "
        "larger --max-seconds."
    ]


def _busy(result: dict[str, Any]) -> list[str]:
    """A warning when other processes used a good share of the CPUs during the sweep (its own use left out)."""
    load = result.get("other_load")
    cores = (result.get("machine") or {}).get("cpu", {}).get("logical_cores")
    if not load or not cores or not is_busy(load, cores):
        return []
    return [
        f"busy machine: other processes kept {load['other_cores']:.1f} of the {cores} logical cores busy on average "
        f"during the sweep ({load['other_cpu_s']:.0f} CPU-seconds in {load['wall_s']:.0f} s, this process's own "
        "time left out); they competed for the cores, so these timings (those of multi-threaded libraries most of "
        "all) are unreliable: rerun on an idle machine."
    ]


def _entry_unstable(entry: dict[str, Any]) -> bool:
    return bool(entry.get("unstable", is_unstable(entry))) if "p25_s" in entry else False


def _row_unstable(row: dict[str, Any], peer: str) -> bool:
    return _entry_unstable(row["results"].get("rnn_xp", {})) or _entry_unstable(row["results"].get(peer, {}))


def _listing(rows: list[dict[str, Any]], value: Any) -> str:
    named = ", ".join(f"{_label(row)} {value(row):.2f}x" for row in rows[:LISTED])
    return named + (f" (+{len(rows) - LISTED} more)" if len(rows) > LISTED else "")


def _label(row: dict[str, Any]) -> str:
    """The case without its input size (constant within a sweep) and the direction: e.g. 'T64-B1-H256 fwd'."""
    case = row["case"]
    label = case["label"].replace(f"-I{case['input_size']}", "")
    return f"{label} {row['direction']}"


def _x(ratios: list[float]) -> str:
    return f"{math.exp(sum(math.log(r) for r in ratios) / len(ratios)):.2f}x"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%" if fraction >= 0.01 else f"{100 * fraction:.1f}%"


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
