"""Result files of a sweep: JSON (every row + the machine), a Markdown table, and comparisons between runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from rnn_xp.benchmark.sweep import SCHEMA
from rnn_xp.benchmark.timing import is_unstable
from rnn_xp.benchmark.verdict import verdict


def file_stem(text: str) -> str:
    """A file-name stem from a machine description: "AMD EPYC 7B13" -> "amd-epyc-7b13" (at most 40 characters)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "machine"


def save(result: dict[str, Any], out: Path, stem: str) -> dict[str, Path]:
    """Write ``{stem}.json`` and ``{stem}.md`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
    temporary = paths["json"].with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=1) + "\n")
    temporary.replace(paths["json"])
    paths["markdown"].write_text(markdown(result))
    return paths


def save_table(data: Any, table: str, out: Path, stem: str) -> Path:
    """Write ``{stem}.json`` (``data``) and ``{stem}.md`` (``table``) into ``out`` (the bench/ scripts' results);
    returns the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / f"{stem}.md").write_text(table)
    return out / f"{stem}.json"


def load(path: Path) -> dict[str, Any]:
    """Read a result JSON, checking that it is one."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        msg = f"{path} is not a readable rnn-xp benchmark JSON ({error})"
        raise ValueError(msg) from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        msg = f"{path} is not an rnn-xp benchmark result (schema {SCHEMA!r} expected)"
        raise ValueError(msg)
    rows = document.get("rows")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"device", "direction", "case", "results"} <= set(r) for r in rows
    ):
        msg = f"{path} has no valid 'rows' (each with device, direction, case and results)"
        raise ValueError(msg)
    return document


def machine_line(result: dict[str, Any]) -> str:
    machine = result["machine"]
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    peaks = ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in result.get("gemm_peak_gflops", {}).items())
    return (
        f"{machine['cpu']['model']} ({machine['cpu']['logical_cores']} threads, {machine['cpu']['blas']}); {gpus}; "
        f"{result['config']['dtype']}; GEMM peak measured in the run: {peaks}"
    )


def markdown(result: dict[str, Any], *, with_verdict: bool = True) -> str:
    """One table per device and direction: rnn_xp's figures, then each peer's time and speedup; then the verdict
    (:func:`rnn_xp.benchmark.verdict.verdict`) unless ``with_verdict`` is False."""
    lines = [f"# rnn-xp bench, {result['date']}", "", machine_line(result), ""]
    if result.get("interrupted"):
        lines += ["**Interrupted (Ctrl-C): the rows below are those finished before it.**", ""]
    for missing in result.get("missing_peers", []):
        lines.append(f"- peer `{missing['peer']}` on {missing['device']}: missing ({missing['reason']})")
    if result.get("missing_peers"):
        lines.append("")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in result["rows"]:
        groups.setdefault((row["device"], row["direction"]), []).append(row)
    for (device, direction), rows in groups.items():
        peers = sorted({name for row in rows for name in row["results"] if name != "rnn_xp"})
        title = "forward" if direction == "fwd" else "forward+backward"
        lines += [f"## {device}, {title}", ""]
        header = ["T", "B", "H", "layers", "rnn_xp ms", "samples/s", "GFLOP/s", "% peak"]
        header += [f"{peer} ms (rnn_xp speedup)" for peer in peers]
        if device == "cuda":
            header.append("GPU/CPU")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---:|" * len(header))
        for row in rows:
            case, ours = row["case"], row["results"].get("rnn_xp", {})
            cells = [str(case["seq_len"]), str(case["batch"]), str(case["hidden"]), _layers_cell(case)]
            if "median_s" in ours:
                cells += [
                    f"{ours['median_s'] * 1e3:.3f}{_flag(ours)}", f"{ours['samples_per_s']:.3g}",
                    f"{ours['gflops']:.1f}",
                    f"{100 * ours['fraction_of_peak']:.0f}%",
                ]
            else:
                cells += ["—"] * 4
            for peer in peers:
                entry = row["results"].get(peer)
                if entry is None:
                    cells.append("missing")
                elif "median_s" in entry:
                    cells.append(f"{entry['median_s'] * 1e3:.3f} ({row['speedup_vs'][peer]:.2f}x){_flag(entry)}")
                else:
                    cells.append(f"{entry['status']}: {entry.get('reason', '')}")
            if device == "cuda":
                cells.append(f"{row['gpu_over_cpu']:.1f}x" if row["gpu_over_cpu"] else "—")
            lines.append("| " + " | ".join(cells) + " |")
        for peer in peers:
            ratios = [row["speedup_vs"][peer] for row in rows if peer in row["speedup_vs"]]
            if ratios:
                geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
                lines.append(f"\nrnn_xp speedup over {peer}: geometric mean {geomean:.2f}x over {len(ratios)} rows")
        lines.append("")
    if with_verdict:
        lines += ["## Verdict", "", *verdict(result), ""]
    return "\n".join(lines)


def _flag(entry: dict[str, Any]) -> str:
    """' ⚠' after a time whose quartiles disagree wildly (see rnn_xp.benchmark.timing.is_unstable)."""
    return " ⚠" if "p25_s" in entry and is_unstable(entry) else ""


def _layers_cell(case: dict[str, Any]) -> str:
    """'1' for one unidirectional layer over full-length sequences; else e.g. '2', '1 bi', '1 lengths'."""
    parts = [str(case.get("num_layers", 1))]
    parts += ["bi"] if case.get("bidirectional") else []
    parts += ["lengths"] if case.get("with_lengths") else []
    return " ".join(parts)


def compare(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-row time ratios second/first for every implementation measured in both runs (rows matched by
    device, direction and case)."""
    index = {(r["device"], r["direction"], r["case"]["label"]): r for r in first["rows"]}
    ratios = []
    for row in second["rows"]:
        key = (row["device"], row["direction"], row["case"]["label"])
        before = index.get(key)
        if before is None:
            continue
        for name, entry in row["results"].items():
            old = before["results"].get(name, {})
            if "median_s" in entry and "median_s" in old:
                ratios.append(
                    {
                        "device": key[0], "direction": key[1], "case": key[2], "implementation": name,
                        "first_s": old["median_s"], "second_s": entry["median_s"],
                        "ratio": entry["median_s"] / old["median_s"],
                    }
                )
    return ratios


def format_comparison(ratios: list[dict[str, Any]], first_name: str, second_name: str) -> str:
    if not ratios:
        return "no rows in common"
    lines = [
        f"time ratio {second_name} / {first_name} (below 1: the second run is faster)",
        "",
        "| device | dir | case | implementation | first ms | second ms | ratio |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in ratios:
        lines.append(
            f"| {r['device']} | {r['direction']} | {r['case']} | {r['implementation']} | {r['first_s'] * 1e3:.3f} "
            f"| {r['second_s'] * 1e3:.3f} | {r['ratio']:.2f} |"
        )
    lines += ["", "geometric mean of the ratios, per implementation:"]
    for (name, device), values in geometric_means(ratios).items():
        lines.append(f"  {name} ({device}): {values['geomean']:.2f} over {values['rows']:.0f} rows")
    return "\n".join(lines)


def geometric_means(ratios: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (implementation, device): the geometric mean of its time ratios and its number of rows, so that one
    implementation's change is neither diluted by nor mixed with another's."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in ratios:
        groups.setdefault((r["implementation"], r["device"]), []).append(r["ratio"])
    return {
        key: {"geomean": math.exp(sum(math.log(v) for v in values) / len(values)), "rows": len(values)}
        for key, values in groups.items()
    }
