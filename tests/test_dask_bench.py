"""rnn-xp bench --dask ADDRESS|local:N: the scaling result files, and every bad --dask value as one error line."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dask.array", reason="rnn_xp.dask needs dask[array]: pip install 'dask[array]'")
pytest.importorskip("distributed", reason="rnn_xp.dask needs distributed: pip install distributed")

from rnn_xp.cli import main
from rnn_xp.dask import cluster
from rnn_xp.dask.bench import SCHEMA, ScalingConfig, run_scaling, worker_counts

TINY = ["--seq-lens", "4", "--batches", "6", "--hidden", "5", "--input-size", "3", "--max-seconds", "0.01"]


@pytest.mark.parametrize("value", ["local:0", "local:", "local:two", "local", "scheduler", "host:99999", "",
                                   "http://host:8786", "tcp://host", "host:port"])
def test_bad_dask_values_are_one_error_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--dask", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("rnn-xp: error: argument --dask: expected a scheduler address")
    assert error.endswith(f"got {value!r}\n")


@pytest.mark.parametrize("value", ["tcp://10.0.0.5:8786", "scheduler.example.org:8786", "tls://[::1]:8786",
                                   "127.0.0.1:1"])
def test_scheduler_addresses_are_accepted(value: str) -> None:
    target = cluster.parse_target(value)
    assert target.address == value and target.local_workers is None


def test_no_scheduler_at_the_address_is_one_error_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)
    code = main(["bench", "--dask", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path), *TINY])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"rnn-xp: error: --dask: no Dask scheduler answered at 'tcp://127.0.0.1:{port}' within 0.5 s")


def test_worker_counts_double_up_to_the_cluster() -> None:
    assert worker_counts(1) == [1]
    assert worker_counts(2) == [1, 2]
    assert worker_counts(5) == [1, 2, 4, 5]
    assert worker_counts(8) == [1, 2, 4, 8]


def _check_rows(result: dict[str, Any], counts: list[int]) -> None:
    assert result["schema"] == SCHEMA
    assert [row["workers"] for row in result["rows"]] == counts
    assert result["threads_per_worker"] == [1] and len(result["client_load_average_1min"]) == 2
    for row in result["rows"]:
        case = row["case"]
        assert row["repeats"] >= 3 and row["wall_s"] > 0
        assert row["samples_per_s"] == pytest.approx(case["batch"] * case["seq_len"] / row["wall_s"])
        assert row["efficiency"] == pytest.approx(row["speedup_vs_1_worker"] / row["workers"])
        assert 0 <= row["communication_share"] and 0 < row["compute_share"] <= 1.0
        assert row["worker_cpu_per_compute_s"] > 0
        assert row["param_bytes_per_worker"] == 4 * (5 * 3 + 5 * 5 + 2 * 5)  # float32 RNN(3, 5)
    assert result["rows"][0]["speedup_vs_1_worker"] == 1.0 and result["rows"][0]["workers_computing"] == 1


def test_bench_on_a_running_scheduler(dask_client: Any, tmp_path: Path) -> None:
    address = dask_client.scheduler.address
    assert main(["bench", "--dask", address, "--out", str(tmp_path), "--name", "run", *TINY]) == 0
    result = json.loads((tmp_path / "run.json").read_text())
    _check_rows(result, [1, 2])
    assert result["target"] == address
    table = (tmp_path / "run.md").read_text()
    assert "| 4 | 6 | 5 | 2 |" in table and "communication" in table


def test_bench_on_local_workers_names_the_files_after_the_machine(tmp_path: Path) -> None:
    assert main(["bench", "--dask", "local:1", "--out", str(tmp_path), *TINY]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 2 and written[0].endswith("-dask-local1.json") and written[1].endswith("-dask-local1.md")
    _check_rows(json.loads((tmp_path / written[0]).read_text()), [1])


def test_each_worker_count_computes_on_that_many_workers(dask_client: Any) -> None:
    # Chunks that outweigh the parameters (800 KB against 1.4 KB) stay on the workers that hold them; with tiny chunks
    # the scheduler may move one to the parameters' worker, and a row would not say how many workers computed.
    config = ScalingConfig(seq_lens=(100,), batches=(64,), hidden=(5,), input_size=64, max_seconds=0.01)
    result = run_scaling(dask_client, config, "local:2")
    assert [(row["workers"], row["workers_computing"]) for row in result["rows"]] == [(1, 1.0), (2, 2.0)]
