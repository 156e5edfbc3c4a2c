"""Progress of a sweep on stderr: a tqdm bar where tqdm is installed, plain lines where it is not.

A sweep runs for minutes; without a sign of life a user takes it for hung. tqdm is an optional extra, so the
plain reporter says the same (rows done, the case being measured, elapsed time and a rough estimate of what is
left), rewriting one line on a terminal and printing one line per case elsewhere (logs, CI, pipes).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Rows done out of ``total``; :meth:`start` names the case being measured, :meth:`advance` counts rows."""

    def __init__(self, total: int, *, stream: TextIO | None = None, prefix: str = "rnn-xp bench") -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self.started = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0

    def start(self, label: str) -> None:
        elapsed = time.perf_counter() - self.started
        left = f", ~{_duration(elapsed / self.done * (self.total - self.done))} left" if self.done else ""
        self._write(f"{self.prefix}: {self.done}/{self.total} rows, now {label} ({_duration(elapsed)}{left})")

    def advance(self, rows: int = 1) -> None:
        self.done += rows

    def close(self) -> None:
        elapsed = _duration(time.perf_counter() - self.started)
        self._write(f"{self.prefix}: {self.done}/{self.total} rows in {elapsed}")
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str) -> None:
        if self._tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class TqdmProgress(Progress):
    """The same interface drawn as a tqdm bar."""

    def __init__(self, total: int, bar: Any) -> None:
        super().__init__(total)
        self.bar = bar

    def start(self, label: str) -> None:
        self.bar.set_description(label)

    def advance(self, rows: int = 1) -> None:
        self.done += rows
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


def make_progress(total: int, *, use_tqdm: bool = True) -> Progress:
    """A tqdm bar when ``use_tqdm`` and tqdm is importable, else plain lines on stderr."""
    if use_tqdm:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return TqdmProgress(total, tqdm(total=total, unit="row", dynamic_ncols=True))
    return Progress(total)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
