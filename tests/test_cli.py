"""The rnn-xp command: info, bench (result schema, missing peers, Ctrl-C safety, plots) and bench compare."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rnn_xp import cli
from rnn_xp.benchmark import peers as peers_module
from rnn_xp.benchmark import results, sweep
from rnn_xp.cli import main

TINY = ["--device", "cpu", "--seq-lens", "3", "5", "--batches", "2", "--hidden", "4", "--input-size", "3",
        "--max-seconds", "0.01", "--quick"]


def _bench(tmp_path: Path, *extra: str, name: str = "run") -> tuple[int, dict[str, Any]]:
    code = main(["bench", *TINY, "--out", str(tmp_path), "--name", name, *extra])
    return code, json.loads((tmp_path / f"{name}.json").read_text())


def test_info_prints_machine_and_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "CPU:" in text and "BLAS" in text and "paths:" in text and "cpu (NumPy, in-place loop): available" in text
    assert main(["info", "--json"]) == 0
    description = json.loads(capsys.readouterr().out)
    assert {"python", "cpu", "versions", "gpus", "paths"} <= set(description)


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "rnn_xp", "info"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("rnn_xp ")


def test_bench_writes_json_table_and_plots(tmp_path: Path) -> None:
    code, result = _bench(tmp_path, "--peers", "numpy-loop")
    assert code == 0
    assert result["schema"] == sweep.SCHEMA and not result["interrupted"]
    assert result["config"]["seq_lens"] == [3, 5] and result["config"]["devices"] == ["cpu"]
    assert result["gemm_peak_gflops"]["cpu"] > 0
    assert {r["direction"] for r in result["rows"]} == {"fwd", "train"}
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        case = row["case"]
        ours = row["results"]["rnn_xp"]
        assert ours["status"] == "ok" and ours["median_s"] > 0 and ours["repeats"] >= 1
        assert ours["samples_per_s"] == pytest.approx(case["batch"] * case["seq_len"] / ours["median_s"])
        forward = 2 * case["seq_len"] * case["batch"] * case["hidden"] * (case["input_size"] + case["hidden"])
        assert row["flops"] == forward * (1 if row["direction"] == "fwd" else 3)
        assert ours["gflops"] == pytest.approx(row["flops"] / ours["median_s"] / 1e9)
        loop = row["results"]["numpy-loop"]
        assert loop["status"] == "ok" and loop["max_abs_diff"] < 1e-5
        assert row["speedup_vs"]["numpy-loop"] == pytest.approx(loop["median_s"] / ours["median_s"])
    table = (tmp_path / "run.md").read_text()
    assert "## cpu, forward" in table and "numpy-loop ms (rnn_xp speedup)" in table
    pytest.importorskip("matplotlib")
    for suffix in ("throughput", "speedup-vs-peers"):
        png = tmp_path / f"run-{suffix}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "run-gpu-over-cpu.png").exists()  # no GPU: no figure; the verdict says so


def test_missing_peer_is_reported_not_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module.Torch, "unavailable", lambda self, case: "torch is not installed")
    code, result = _bench(tmp_path, "--peers", "torch,numpy-loop", "--no-plots")
    assert code == 0
    assert {"peer": "torch", "device": "cpu", "reason": "torch is not installed"} in result["missing_peers"]
    assert "peer `torch` on cpu: missing (torch is not installed)" in (tmp_path / "run.md").read_text()


def test_a_peer_that_disagrees_is_not_timed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = peers_module.NumpyLoop.output
    monkeypatch.setattr(peers_module.NumpyLoop, "output", lambda self: original(self) + 1.0)
    _, result = _bench(tmp_path, "--peers", "numpy-loop", "--no-plots")
    for row in result["rows"]:
        entry = row["results"]["numpy-loop"]
        assert entry["status"] == "wrong" and "median_s" not in entry
        assert "numpy-loop" not in row["speedup_vs"]


def test_ctrl_c_keeps_the_rows_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = sweep._measure_case

    def interrupt_on_second_case(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "_measure_case", interrupt_on_second_case)
    code, result = _bench(tmp_path, "--peers", "numpy-loop", "--no-plots")
    assert code == 130
    assert result["interrupted"] is True
    assert len(result["rows"]) == 2 and {r["case"]["seq_len"] for r in result["rows"]} == {3}
    assert "Interrupted (Ctrl-C)" in (tmp_path / "run.md").read_text()


def test_compare_gives_per_row_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, first = _bench(tmp_path, "--peers", "numpy-loop", "--no-plots", name="a")
    second = json.loads(json.dumps(first))
    for row in second["rows"]:
        for entry in row["results"].values():
            entry["median_s"] *= 2
    (tmp_path / "b.json").write_text(json.dumps(second))
    capsys.readouterr()
    assert main(["bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    ratios = results.compare(first, second)
    assert len(ratios) == 8 and all(r["ratio"] == pytest.approx(2.0) for r in ratios)
    # One geometric mean per implementation, not one over every implementation's rows.
    assert "  rnn_xp (cpu): 2.00 over 4 rows" in text and "  numpy-loop (cpu): 2.00 over 4 rows" in text
    assert "over 8 rows" not in text


def test_compare_rejects_a_foreign_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert main(["bench", "compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    assert "not an rnn-xp benchmark result" in capsys.readouterr().err


def test_bench_rejects_unknown_peers_and_missing_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--peers", "tensorflow"]) == 2
    assert "--peers must be among" in capsys.readouterr().err
    from helpers import HAVE_GPU

    if not HAVE_GPU:
        assert main(["bench", "--device", "cuda"]) == 2
        assert "needs CuPy and an NVIDIA GPU" in capsys.readouterr().err


def test_train_and_sample_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.txt"
    text.write_text("".join(f"x = {i} + {i * 3}\n" for i in range(300)))
    out = tmp_path / "charlm"
    code = main(["train", "charlm", "--text", str(text), "--max-updates", "30", "--hidden", "16", "--embedding",
                 "8", "--steps", "16", "--batch", "4", "--eval-chunks", "2", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "charlm-summary.json").read_text())
    assert summary["updates"] == 30 and summary["held_out_bits_per_char"] > 0
    assert (out / "charlm.safetensors").exists()
    printed = capsys.readouterr()
    # One held-out figure, with what it is; the progress bar shows training figures only.
    figures = [line for line in printed.out.splitlines() if "bits per character" in line]
    assert figures == [line for line in printed.out.splitlines() if line.startswith("held-out: ")]
    assert len(figures) == 1 and f"held-out: {summary['held_out_bits_per_char']:.3f} bits per character (" in \
        figures[0] and "never trained on" in figures[0]
    assert "held_out" not in printed.err
    assert main(["sample", "--checkpoint", str(out / "charlm.safetensors"), "--length", "40", "--prime", "x = ",
                 "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.rstrip("\n")
    assert sampled.startswith("x = ") and len(sampled) == 44
    code = main(["train", "adding", "--seq-len", "20", "--hidden", "8", "--max-updates", "20", "--out",
                 str(tmp_path / "adding")])
    assert code == 0
    assert json.loads((tmp_path / "adding" / "adding-summary.json").read_text())["updates"] == 20


def test_train_rejects_an_unknown_sampler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "charlm", "--sampler", "shuffle", "--max-updates", "1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--sampler: invalid choice: 'shuffle'" in err and "'streams', 'windows'" in err


@pytest.mark.parametrize(
    "argv",
    [["bench", "--device", "gpu"], ["sample", "--device", "cuda:x"], ["train", "adding", "--device", "tpu"],
     ["bench", "--device", "cuda:1"]],
)
def test_every_command_validates_device_the_same_way(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "--device" in capsys.readouterr().err


# Issue 11, item 12: inputs that ended in a traceback or ran with nonsense (exit 0). "{tmp}" is the test's folder.
BAD_INPUTS = [
    ["sample", "--checkpoint", "{tmp}/missing.safetensors"],
    ["sample", "--temperature", "-1"],
    ["train", "charlm", "--text", "{tmp}/nonexistent.txt", "--out", "{tmp}/out"],
    ["train", "charlm", "--text", "{tmp}/empty.txt", "--out", "{tmp}/out"],
    ["train", "charlm", "--text", "{tmp}/binary.txt", "--out", "{tmp}/out"],
    ["train", "charlm", "--lr", "nan", "--out", "{tmp}/out"],
    ["train", "charlm", "--minutes", "-1", "--out", "{tmp}/out"],
    ["train", "charlm", "--max-updates", "-5", "--out", "{tmp}/out"],
    ["train", "adding", "--seq-len", "0", "--out", "{tmp}/out"],
    ["train", "adding", "--seq-len", "1", "--out", "{tmp}/out"],
    ["train", "adding", "--steps", "1", "--out", "{tmp}/out"],
    ["train", "charlm", "--sampler", "shuffle", "--out", "{tmp}/out"],
    ["train", "charlm", "--dtype", "float16", "--out", "{tmp}/out"],
    ["train", "adding", "--init", "foo", "--out", "{tmp}/out"],
    ["bench", "--hidden", "0"],
    ["bench", "--batches", "-1"],
    ["bench", "--seq-lens", "0"],
    ["bench", "--max-seconds", "-1"],
    ["bench", "--max-seconds", "nan"],
    ["bench", "--name", "../../x"],
    ["bench", "--device", "cpu", "--out", "/proc/not-writable"],
    ["bench", "compare", "{tmp}/rowless.json", "{tmp}/rowless.json"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=["_".join(a).replace("{tmp}/", "") for a in BAD_INPUTS])
def test_every_bad_input_is_one_line_and_exit_2(argv: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "rowless.json").write_text('{"schema": "rnn-xp-bench/1", "machine": {}}')
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.startswith("rnn-xp: error: ") and "\n" not in err, err
    assert not (tmp_path / "out" / "charlm-summary.json").exists()


def test_train_resume_for_both_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11, item 11: --resume continues a run; a checkpoint that does not fit, or of the other example, is one
    clear line; sample refuses a checkpoint that is not charlm's."""
    text = tmp_path / "text.txt"
    text.write_text("".join(f"y = {i} * {i % 5}\n" for i in range(300)))
    charlm_args = ["train", "charlm", "--text", str(text), "--hidden", "8", "--embedding", "4", "--steps", "8",
                   "--batch", "2", "--eval-chunks", "1", "--out", str(tmp_path / "c")]
    adding_args = ["train", "adding", "--seq-len", "6", "--hidden", "4", "--batch", "3", "--out", str(tmp_path / "a")]
    assert main([*charlm_args, "--max-updates", "4"]) == 0
    assert main([*adding_args, "--max-updates", "4"]) == 0
    capsys.readouterr()
    assert main([*charlm_args, "--max-updates", "7", "--resume", str(tmp_path / "c" / "charlm.safetensors")]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "charlm-summary.json").read_text())["updates"] == 7
    assert main([*adding_args, "--max-updates", "6", "--resume", str(tmp_path / "a" / "adding.safetensors")]) == 0
    assert json.loads((tmp_path / "a" / "adding-summary.json").read_text())["updates"] == 6
    capsys.readouterr()
    for argv in (
        [*charlm_args[:-1], str(tmp_path / "c2"), "--hidden", "9", "--resume", str(tmp_path / "c" / "charlm.safetensors")],
        [*adding_args, "--resume", str(tmp_path / "c" / "charlm.safetensors")],
        ["sample", "--checkpoint", str(tmp_path / "a" / "adding.safetensors")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("rnn-xp: error: ") and "\n" not in err, err


# Issue 12, items 1, 2, 4 and 8: where runs go, the verdict, progress without tqdm, and the help texts.
REPO = Path(__file__).resolve().parents[1]


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_option_has_help_choices_and_its_default_shown() -> None:
    parsers = list(_all_parsers(cli._parser()))
    assert {p.prog for p in parsers} >= {"rnn-xp bench", "rnn-xp train charlm", "rnn-xp train adding",
                                          "rnn-xp sample", "rnn-xp info"}
    formatter = cli._HelpFormatter("rnn-xp")
    checked = 0
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{parser.prog} {action.option_strings or action.dest}"
            assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, name
            assert not action.help.startswith("default"), name  # a description, not only the default
            if action.default not in (None, False):
                assert "%(default)" in (formatter._get_help_string(action) or ""), name
            if "--device" in action.option_strings:
                assert action.metavar.startswith("{cpu,cuda"), name
            if {"--init", "--sampler", "--dtype", "--direction"} & set(action.option_strings):
                assert action.choices, name
            checked += 1
    assert checked > 40
    adding = " ".join(next(p for p in parsers if p.prog == "rnn-xp train adding").format_help().split())
    assert "--init {identity,torch}" in adding and "(default: identity)" in adding
    assert "--seq-len T, --steps T" in adding and "sequence length T" in adding and "(default: 100)" in adding
    charlm = " ".join(next(p for p in parsers if p.prog == "rnn-xp train charlm").format_help().split())
    assert "--sampler {streams,windows}" in charlm and "(default: windows)" in charlm


def test_bench_help_mentions_compare_and_compare_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # the help is wrapped to the terminal's width
    assert "rnn-xp bench compare A.json B.json" in text and "geometric mean per" in text
    assert "(default: bench/runs)" in text and "--device {cpu,cuda,all}" in text
    with pytest.raises(SystemExit):
        main(["bench", "compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one geometric mean per implementation" in text and "(the baseline)" in text


def test_adding_seq_len_and_its_deprecated_name(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli._parser()
    assert parser.parse_args(["train", "adding", "--seq-len", "30"]).steps == 30
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["train", "adding", "--steps", "40"]).steps == 40
    assert "rnn-xp: warning: --steps is deprecated; use --seq-len" in capsys.readouterr().err


def test_bench_runs_go_to_a_folder_git_ignores() -> None:
    """Item 1: `make bench` and `rnn-xp bench` write no tracked file; the reference results are apart."""
    assert cli._parser().parse_args(["bench"]).out == Path("bench/runs")
    makefile = (REPO / "Makefile").read_text()
    recipes = [line for line in makefile.splitlines() if line.startswith("\t")]
    assert not [line for line in recipes if "bench/results" in line]
    assert "RUNS   := bench/runs" in makefile and "$(BIN)/rnn-xp bench --quick --out $(RUNS)" in makefile
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "bench/runs/amd-epyc-quick.json"], cwd=REPO)
    assert ignored.returncode == 0, "bench/runs/ must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "bench/runs", "bench/results"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    assert not [path for path in tracked if path.startswith("bench/runs/")]
    assert "bench/results/reference-amd-epyc-quick.json" in tracked


def test_readme_links_exist_and_commands_use_the_venv() -> None:
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(((?:bench|tools|docs)/[^)#]+)", readme)
    assert len(targets) >= 5 and all((REPO / target).exists() for target in targets), targets
    assert "source .venv/bin/activate" in readme and ".venv/bin/rnn-xp --help" in readme
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if "rnn-xp " in line]
    assert all(".venv/bin/rnn-xp " in line for line in commands), commands
    assert "https://download.pytorch.org/whl/cpu" in readme and "TORCH_PIP_ARGS" in readme


def test_bench_without_matplotlib_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, _ = _bench(tmp_path, "--peers", "numpy-loop")
    assert code == 0
    assert "no plots: matplotlib is not installed (pip install matplotlib)" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))


def test_bench_ends_with_the_verdict_and_shows_progress_without_tqdm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    code, _ = _bench(tmp_path, "--peers", "numpy-loop", "--no-plots")
    assert code == 0
    captured = capsys.readouterr()
    assert "rnn-xp bench: 0/4 rows, now cpu T3-B2-I3-H4" in captured.err
    assert "rnn-xp bench: 4/4 rows in " in captured.err
    out = captured.out.rstrip("\n").splitlines()
    start = out.index("Verdict (x = the other's time / rnn_xp's time: above 1, rnn_xp is faster):")
    assert all(not line.startswith("wrote ") for line in out[start:])
    tail = " ".join(" ".join(out[start:]).split())
    assert "vs numpy-loop (cpu): rnn_xp faster on" in tail and "GEMM peak (cpu):" in tail
    assert "GPU vs CPU: not measured" in tail
    assert len(out) - start <= 12  # a few lines
    assert "## Verdict" in (tmp_path / "run.md").read_text()
