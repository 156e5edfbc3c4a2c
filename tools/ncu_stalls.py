"""Print each kernel's duration and its largest warp-stall reasons from an `ncu --page raw --csv` export.

    python tools/ncu_stalls.py report-raw.csv
"""

from __future__ import annotations

import csv
import sys

PREFIX = "smsp__average_warps_issue_stalled_"
SUFFIX = "_per_issue_active.ratio"


def main(path: str) -> int:
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    start = next((i for i, row in enumerate(rows) if "Kernel Name" in row), None)
    if start is None:
        print(f"{path}: no kernel rows")
        return 1
    header = rows[start]
    for row in rows[start + 2:]:  # the row after the header holds units
        record = dict(zip(header, row, strict=False))
        stalls = {}
        for name, value in record.items():
            if name.startswith(PREFIX) and name.endswith(SUFFIX):
                try:
                    stalls[name[len(PREFIX):-len(SUFFIX)]] = float(value.replace(",", ""))
                except ValueError:
                    continue
        top = sorted(stalls.items(), key=lambda item: -item[1])[:8]
        duration = record.get("gpu__time_duration.sum", "?")
        issued = record.get("sm__inst_issued.avg.pct_of_peak_sustained_active", "?")
        print(f"{record.get('Kernel Name', '?')[:60]}: duration {duration}, issue active {issued}%")
        total = sum(stalls.values()) or 1.0
        print("  stalls (cycles per issued instruction): "
              + ", ".join(f"{name} {value:.2f} ({100 * value / total:.0f}%)" for name, value in top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
