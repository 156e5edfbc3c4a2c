"""Opt-in tuning (rnn_xp.tuning, `rnn-xp tune`) and the fixed rule it overrides (rnn_xp._plan): the fit, the plan
file, which plan a process uses, and the lookup."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnn_xp import _plan, tuning
from rnn_xp.cli import main


@pytest.fixture(autouse=True)
def fresh_plan(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test decides its own plan (and leaves none behind)."""
    monkeypatch.setattr(tuning, "_state", {})
    yield


def _table(ratios: dict[int, float]) -> dict[tuple[int, int], dict[str, float]]:
    """hidden 64: {batch: compiled time / numpy time}."""
    return {(64, batch): {"numpy": 1.0, "compiled": ratio} for batch, ratio in ratios.items()}


def test_the_winner_of_each_measured_cell_and_the_numpy_loop_where_none_was_measured() -> None:
    ratios = {1: 0.5, 2: 1.05, 4: 0.6, 8: 0.95, 16: 1.3}
    assert tuning.winners(_table(ratios), (64,), (1, 2, 4, 8, 16, 32)) == {64: "cncnnn"}  # B=8: within the margin
    three = {(64, 1): {"numpy": 1.0, "compiled": 0.5, "numpy_transposed": 0.6},
             (64, 2): {"numpy": 1.0, "compiled": 1.2, "numpy_transposed": 0.9},
             (64, 4): {"numpy": 1.0, "compiled": 0.85, "numpy_transposed": 0.8},
             (64, 8): {"numpy": 1.0, "numpy_transposed": 0.91}}  # the compiled loop no longer measured
    assert tuning.winners(three, (64,), (1, 2, 4, 8, 16)) == {64: "cttnn"}


TABLE = {("float32", 1): {32: "cccn", 64: "cctn", 128: "cncn"}}
TABLE_BATCHES = (1, 2, 4, 8)


@pytest.mark.parametrize(("hidden", "batch", "expected"), [
    (32, 4, "compiled"), (32, 8, "numpy"), (128, 2, "numpy"), (128, 4, "compiled"),  # measured cells
    (45, 4, "compiled"), (46, 4, "numpy_transposed"),  # 45 is nearer 32 than 64 on a log scale, 46 nearer 64
    (32, 5, "compiled"), (32, 6, "numpy"),  # 5 is nearer 4, 6 nearer 8 (log scale)
    (128, 3, "compiled"),  # log2(3) is nearer 4 than 2
    (1, 1, "compiled"),  # below the smallest: the smallest
    (256, 1, "compiled"), (257, 1, "numpy"),  # beyond twice the largest measured hidden size (128): BLAS
    (32, 16, "numpy"), (32, 17, "numpy"),  # up to twice the largest batch: its cell; beyond: BLAS
])
def test_the_lookup_takes_the_nearest_measured_cell(hidden: int, batch: int, expected: str) -> None:
    assert _plan.lookup(TABLE, TABLE_BATCHES, "float32", batch, hidden, 1) == expected


def test_a_dtype_or_direction_count_not_in_the_table_takes_the_numpy_loop() -> None:
    assert _plan.lookup(TABLE, TABLE_BATCHES, "float64", 1, 32, 1) == "numpy"
    assert _plan.lookup(TABLE, TABLE_BATCHES, "float32", 1, 32, 2) == "numpy"


def test_the_fixed_rule_covers_both_dtypes_and_directions_and_is_the_committed_measurement() -> None:
    """rnn_xp/_plan.py holds the choices that bench/loop_rule.py derived from the committed measurements."""
    results = sorted(Path(__file__).resolve().parents[1].glob("bench/results/*-loop-rule.json"))
    assert results, "the loop rule's measurements are committed under bench/results/"
    measured = json.loads(results[0].read_text())
    assert tuple(measured["batches"]) == _plan.BATCHES
    for (dtype, directions), rows in _plan.CPU_CHOICES.items():
        assert {str(h): letters for h, letters in rows.items()} == measured["choices"][f"{dtype},{directions}"]
    assert set(_plan.CPU_CHOICES) == {(d, n) for d in ("float32", "float64") for n in (1, 2)}
    spec = importlib.util.spec_from_file_location("loop_rule", results[0].parents[1] / "loop_rule.py")
    assert spec is not None and spec.loader is not None
    loop_rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop_rule)
    refitted = loop_rule.refit(json.loads(results[0].read_text()))["choices"]  # the choices follow from the rows
    assert {key: {str(h): letters for h, letters in rows.items()} for key, rows in refitted.items()} \
        == measured["choices"]


def _plan_here(letters: dict[int, str]) -> tuning.Plan:
    """A plan of this machine for float32, one direction, measured at batches 1 and 1024."""
    return tuning.Plan(machine=tuning.this_machine(), batches=(1, 1024), cpu={("float32", 1): letters})


def test_a_plan_file_round_trips_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    plan = tuning.Plan(machine={"cpu": "x", "usable_cpus": 3}, batches=(1, 4), cpu={("float32", 1): {32: "cn", 64: "nn"}},
                       cuda=(tuning.CudaChoice("H200", "float32", 2, 64, 1024, "per_step"),))
    path = tuning.save(plan, tmp_path / "deep" / "plan.json")
    assert tuning.load(path) == plan
    for text, match in (("{", "not JSON"), ('{"rnn_xp_plan": 99}', "rnn_xp_plan must be 1"),
                        ('{"rnn_xp_plan": 1, "machine": {}, "batches": [1], "cpu": [{"dtype": "float32"}], '
                         '"cuda": []}', "KeyError"),
                        ('{"rnn_xp_plan": 1, "machine": {}, "batches": [1, 2], "cuda": [], "cpu": [{"dtype": '
                         '"float32", "directions": 1, "hidden": 8, "loops": "cx"}]}', "2 letters c, n or t; got 8, cx")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=rf"bad.json is not an rnn_xp plan file.*{match}"):
            tuning.load(bad)


def test_where_the_plan_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("RNN_XP_PLAN")
    assert tuning.plan_path() == tuning.default_path() == tmp_path / "rnn_xp" / "plan.json"
    monkeypatch.setenv("RNN_XP_PLAN", str(tmp_path / "mine.json"))
    assert tuning.plan_path() == tmp_path / "mine.json"
    for off in ("none", "", "off"):
        monkeypatch.setenv("RNN_XP_PLAN", off)
        assert tuning.plan_path() is None


def test_a_process_applies_a_plan_of_this_machine_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tuning.save(_plan_here({32: "cc"}), tmp_path / "plan.json")
    monkeypatch.setenv("RNN_XP_PLAN", str(path))
    assert _plan.cpu_loop_name("float32", 600, 32, 1) == "compiled"  # the plan's threshold, not the rule's
    assert _plan.cpu_loop_name("float64", 600, 32, 1) == "numpy"  # not in the plan: the fixed rule
    tuning.save(tuning.Plan(machine={"cpu": "another CPU", "usable_cpus": 64}, batches=(1, 1024),
                            cpu={("float32", 1): {32: "cc"}}), path)
    monkeypatch.setattr(tuning, "_state", {})
    with pytest.warns(RuntimeWarning, match=r"ignoring the plan file .*measured on .*another CPU"):
        assert tuning.active_plan() is None
    path.write_text("{")
    monkeypatch.setattr(tuning, "_state", {})
    with pytest.warns(RuntimeWarning, match=r"ignoring the plan file: .*\(not JSON"):
        assert tuning.active_plan() is None
    assert _plan.cpu_loop_name("float32", 600, 32, 1) == "numpy"


def test_use_sets_and_clears_the_plan(tmp_path: Path) -> None:
    assert tuning.active_plan() is None  # RNN_XP_PLAN=none in the tests
    tuning.use(_plan_here({32: "cc"}))
    assert _plan.cpu_loop_name("float32", 600, 32, 1) == "compiled"
    tuning.use(tuning.save(_plan_here({32: "nn"}), tmp_path / "p.json"))
    assert _plan.cpu_loop_name("float32", 1, 32, 1) == "numpy"
    tuning.use(None)
    assert _plan.cpu_loop_name("float32", 1, 32, 1) == "compiled"


def test_the_gpu_choice_is_the_nearest_measured_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tuning.Plan(machine={}, cuda=(
        tuning.CudaChoice("H200", "float32", 1, 1, 128, "persistent"),
        tuning.CudaChoice("H200", "float32", 1, 64, 2048, "per_step"),
        tuning.CudaChoice("A100", "float32", 1, 1, 128, "per_step"),
    ))
    monkeypatch.setattr(tuning, "_current_gpu", lambda **_: "H200")
    assert plan.cuda_path("float32", 2, 100, 1) == "persistent"
    assert plan.cuda_path("float32", 32, 4096, 1) == "per_step"
    assert plan.cuda_path("float64", 2, 100, 1) == "auto"  # not measured: the launch model
    assert plan.cuda_path("float32", 2, 100, 2) == "auto"
    monkeypatch.setattr(tuning, "_current_gpu", lambda **_: "L4")
    assert plan.cuda_path("float32", 2, 100, 1) == "auto"


def test_tune_measures_and_writes_a_plan_that_a_later_process_would_load(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    lines: list[str] = []
    plan = tuning.tune(tmp_path / "plan.json", dtypes=("float32",), directions=(1, 2), hidden_sizes=(8, 16),
                       batches=(1, 4), steps=3, gpu=False, budget=0.001, progress=lines.append)
    assert set(plan.cpu) == {("float32", 1), ("float32", 2)}
    assert plan.batches == (1, 4)
    assert all(set(rows) == {8, 16} and all(len(v) == 2 and set(v) <= {"c", "n", "t"} for v in rows.values())
               for rows in plan.cpu.values())
    assert tuning.load(tmp_path / "plan.json") == plan
    assert plan.machine == tuning.this_machine()
    assert len(lines) >= 4 and all("numpy_transposed" in line and "ms" in line for line in lines)
    assert tuning.active_plan() is None  # this process keeps its plan until use()


def test_the_tune_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numba")
    monkeypatch.setattr(tuning, "HIDDEN_SIZES", (8,))
    monkeypatch.setattr(tuning, "BATCHES", (1, 2))
    monkeypatch.setattr(tuning, "STEPS", 3)
    out = tmp_path / "plan.json"
    assert main(["tune", "--quick", "--budget", "0.001", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "float32, 1 direction(s), H=8: B=1 " in printed and f"wrote {out}" in printed
    assert set(tuning.load(out).cpu) == {("float32", 1)}


@pytest.mark.parametrize(("argv", "message"), [
    (["tune", "--budget", "-1"], "argument --budget: expected a finite positive number; got '-1'"),
    (["tune", "--budget", "nan"], "argument --budget: expected a finite positive number; got 'nan'"),
])
def test_the_tune_command_refuses_bad_input_in_one_line(argv: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"rnn-xp: error: {message}\n"


def test_the_tune_command_refuses_an_unwritable_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["tune", "--out", str(blocker / "plan.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnn-xp: error: --out's folder") and err.count("\n") == 1


def test_a_plan_with_an_unknown_gpu_path_is_refused(tmp_path: Path) -> None:
    plan = tuning.Plan(machine={}, cuda=(tuning.CudaChoice("H200", "float32", 1, 1, 128, "warp_speed"),))
    path = tuning.save(plan, tmp_path / "plan.json")
    with pytest.raises(ValueError, match=r"cuda entries need a path among .*; got paths \['warp_speed'\]"):
        tuning.load(path)


def test_without_numba_a_compiled_cell_runs_the_numpy_loop_and_a_transposed_one_stays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The transposed loop is plain NumPy: only the compiled loop falls back when numba is missing."""
    monkeypatch.setattr(tuning, "_state", {"plan": None})
    compiled = next((dtype, b, h, d) for (dtype, d), rows in _plan.CPU_CHOICES.items() for h, letters in rows.items()
                    for b, letter in zip(_plan.BATCHES, letters, strict=True) if letter == "c")
    transposed = next((dtype, b, h, d) for (dtype, d), rows in _plan.CPU_CHOICES.items() for h, letters in rows.items()
                      for b, letter in zip(_plan.BATCHES, letters, strict=True) if letter == "t")
    assert _plan.cpu_loop_name(*compiled) == "compiled" and _plan.cpu_loop_name(*transposed) == "numpy_transposed"
    monkeypatch.setattr(_plan, "numba_available", lambda: False)
    assert _plan.cpu_loop_name(*compiled) == "numpy"
    assert _plan.cpu_loop_name(*transposed) == "numpy_transposed"
