"""The device script (tools/gpu_session.py, run by tools/gpu_session.sh) without a GPU: its syntax, its plan (stage
caps under 8 minutes, at most 8 files back, a prediction for every stage), its caps enforced, and a dry run whose
stages are answered by a stand-in device, ending with the summary."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))
try:
    import gpu_probe
    import gpu_session
    import gpu_sweep
finally:
    del sys.path[:2]


def test_the_shell_wrapper_parses() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    result = subprocess.run(["bash", "-n", str(ROOT / "tools" / "gpu_session.sh")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_plan_fits_eight_minutes_and_eight_files() -> None:
    plan = gpu_session.stages(Path("/tmp/work"))
    assert [stage.name for stage in plan] == ["setup", "device", "tests", "sanitizer", "probes", "sweep", "ncu"]
    assert sum(stage.cap_s for stage in plan) == 450 < gpu_session.BUDGET_S == 480
    assert len(gpu_session.OUT_FILES) == 8
    assert gpu_session.check_plan() == []
    tests = next(stage for stage in plan if stage.name == "tests")
    assert tests.env == {"RNN_XP_REQUIRE_GPU": "1"} and "-m gpu" in tests.commands[0]
    assert any("memcheck" in c for c in plan[3].commands) and any("racecheck" in c for c in plan[3].commands)


def test_the_predictions_cover_what_the_probes_measure() -> None:
    predictions = gpu_session.PREDICTIONS
    assert set(predictions["latency"]) == set(gpu_probe.LATENCY_SIZES)
    assert len(gpu_probe.LATENCY_STEPS) >= 3
    assert set(predictions["crossover"]) == set(gpu_probe.CROSSOVER_SIZES)
    assert set(predictions["split_k"]) == set(gpu_probe.SPLIT_K_CASES)
    assert len(gpu_sweep.MISSED) == 14 and len(gpu_sweep.WON) == 6


def test_the_probes_and_the_sweep_parse_their_arguments_without_a_gpu() -> None:
    env = {"PYTHONPATH": str(ROOT)}
    probe = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_probe.py"), "--help"], capture_output=True,
                           text=True, check=False, env=env)
    assert probe.returncode == 0 and "smoke" in probe.stdout
    listing = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_sweep.py"), "--list"], capture_output=True,
                             text=True, check=False, env=env)
    assert listing.returncode == 0 and listing.stdout.count("missed ") == 14 and listing.stdout.count("won ") == 6


@pytest.mark.usefixtures("sigint_raises")
def test_a_command_past_its_cap_is_interrupted(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as log:
        started = time.monotonic()
        status, seconds = gpu_session.run_command("trap 'echo interrupted; exit 130' INT; sleep 20 & wait",
                                                  cap_s=1, env={"PATH": "/usr/bin:/bin"}, log=log)
    assert status == 124 and seconds < 8 and time.monotonic() - started < 8
    assert "interrupted" in (tmp_path / "log").read_text()


def test_stages_get_no_more_than_the_time_left(tmp_path: Path) -> None:
    ran: list[str] = []

    def runner(command: str, **options: Any) -> tuple[int, float]:
        ran.append(command)
        return 0, 0.0

    record = gpu_session.run_stages(tmp_path, tmp_path, runner=runner, budget_s=3)
    assert not ran and all(entry.get("skipped") == "out of time" for entry in record)


def test_a_dry_run_on_the_stand_in_device(tmp_path: Path) -> None:
    """Every stage answered, the 8 files written, the summary printed last, each measurement beside its
    prediction, and the exit status of a clean run."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        status = gpu_session.main(["--dry-run", "--out", str(tmp_path)])
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(gpu_session.OUT_FILES)
    summary = (tmp_path / "summary.txt").read_text()
    assert printed.getvalue().endswith(summary)
    for stage in ("setup", "device", "tests", "sanitizer", "probes", "sweep", "ncu"):
        assert f"{stage:9s}" in summary and f"{stage:9s}     0 s" in summary
    assert ": ok" in summary and "exit" not in summary
    assert "tests: 409 passed, 0 failed, 0 errors, 0 skipped" in summary
    assert "sanitizer: memcheck 0 errors, racecheck 0 hazards (0, 0)" in summary
    assert "   1024   64 |    8.80 (8.00)" in summary  # measured beside predicted
    assert "crossover H=1024 B=256: fastest per_step (per_step), chosen" in summary
    assert "GPU vs CPU (rnn_xp on each)" in summary and "predicted GPU/CPU crossover" in summary
    assert "stalls (cycles per issued instruction): barrier" in summary
