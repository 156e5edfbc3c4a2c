"""The test run's closing summary: skips counted by reason in a few lines (tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import SKIP_REASONS_SHOWN, skip_summary


def _skipped(reason: str) -> SimpleNamespace:
    return SimpleNamespace(longrepr=("tests/test_x.py", 1, f"Skipped: {reason}"))


def test_skips_are_counted_by_reason_most_first() -> None:
    reports = [_skipped("needs a GPU")] * 300 + [_skipped("torch is not installed")] * 20 + [_skipped("jax")]
    assert skip_summary(reports) == ["  300  needs a GPU", "   20  torch is not installed", "    1  jax"]


def test_many_reasons_end_in_one_line() -> None:
    reports = [_skipped(f"reason {i}") for i in range(SKIP_REASONS_SHOWN + 5)]
    lines = skip_summary(reports)
    assert len(lines) == SKIP_REASONS_SHOWN + 1
    assert lines[-1] == "    5  for 5 other reasons (pytest -rs lists every skip)"
