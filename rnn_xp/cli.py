"""The ``rnn-xp`` command: ``info``, ``bench``, ``bench compare``, ``train``, ``sample`` (or ``python -m rnn_xp``)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["bench", "compare"]:
        return _compare(args[2:])
    parser = _parser()
    options = parser.parse_args(args)
    if options.command is None:
        parser.print_help()
        return 2
    try:
        return int(options.run(options))
    except UsageError as error:
        return _report(str(error))


class _Parser(argparse.ArgumentParser):
    """Bad input: one line ``rnn-xp: error: …`` on stderr and exit status 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        _fail(message)


class UsageError(Exception):
    """Bad input found after parsing (a file that is missing, a folder that cannot be written, ...)."""


def _report(message: str) -> int:
    """Print the one-line error; the exit status for it."""
    print(f"rnn-xp: error: {message}", file=sys.stderr)
    return 2


def _fail(message: str) -> NoReturn:
    raise SystemExit(_report(message))


def _int_at_least(minimum: int, meaning: str) -> Any:
    """An argparse type: an integer >= ``minimum`` (``meaning`` words the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {meaning}; got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number; got {text!r}")
    return value


def _dask_target(text: str) -> Any:
    try:
        from rnn_xp.dask.cluster import parse_target
    except ImportError:
        raise argparse.ArgumentTypeError("needs dask and distributed: pip install 'rnn-xp[dask]'") from None
    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _file_stem(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"expected a file name without folders (letters, digits, . _ -); got {text!r}")
    return text


def _writable_folder(path: Path, argname: str) -> None:
    """Fail now, not after a long run, if ``path`` cannot hold the results."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"{argname} {str(path)!r} is not a writable folder ({error.strerror or error})") from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnn-xp", description="rnn_xp: a vanilla RNN on NumPy and CuPy.")
    commands = parser.add_subparsers(dest="command")

    info = commands.add_parser("info", help="versions, CPU, BLAS, GPUs and available paths")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(run=_info)

    bench = commands.add_parser(
        "bench",
        help="sweep sequence lengths x batches x hidden sizes on CPU/GPU against peers "
        "(`rnn-xp bench compare A.json B.json` compares two runs)",
    )
    _device_option(bench, default="all", extra=("all",), help_text="where to run: cpu, cuda, or all (every device "
                   "present)", indexed=False)
    bench.add_argument("--quick", action="store_true", help="a small sweep (minutes on a 2-core CPU)")
    bench.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for JSON, table, plots")
    bench.add_argument("--name", type=_file_stem, default=None,
                       help="file stem of the results (default: from the hardware)")
    bench.add_argument("--peers", default="torch,numpy-loop,torch-cudnn,rnn_xp-generic",
                       help="comma-separated peers: torch, numpy-loop (CPU); torch-cudnn, rnn_xp-generic (GPU)")
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    bench.add_argument("--seq-lens", type=_positive_int, nargs="+", default=None)
    bench.add_argument("--batches", type=_positive_int, nargs="+", default=None)
    bench.add_argument("--hidden", type=_positive_int, nargs="+", default=None)
    bench.add_argument("--input-size", type=_positive_int, default=64)
    bench.add_argument("--direction", choices=["fwd", "train", "both"], default="both",
                       help="forward only, forward+backward, or both")
    bench.add_argument("--max-seconds", type=_positive_float, default=None,
                       help="timing budget per implementation and row (default 0.5 quick, 2 full)")
    bench.add_argument("--no-plots", action="store_true")
    bench.add_argument("--dask", type=_dask_target, default=None, metavar="ADDRESS|local:N",
                       help="instead: batch-inference throughput of rnn_xp.dask against the number of workers of the "
                       "scheduler at ADDRESS, or of N local worker processes (uses --seq-lens, --batches, --hidden, "
                       "--input-size, --dtype, --max-seconds, --out, --name)")
    bench.set_defaults(run=_bench)

    train = commands.add_parser("train", help="train an example: charlm (text) or adding (many-to-one)")
    examples = train.add_subparsers(dest="example", required=True)
    charlm = examples.add_parser("charlm", help="character-level language model on the stdlib sources")
    _add_fields(charlm, "charlm")
    charlm.add_argument("--resume", type=Path, default=None, help="continue from this charlm checkpoint")
    charlm.set_defaults(run=_train)
    adding = examples.add_parser("adding", help="the adding problem (regression over long sequences)")
    _add_fields(adding, "adding")
    adding.add_argument("--resume", type=Path, default=None, help="continue from this adding checkpoint")
    adding.set_defaults(run=_train)

    sample = commands.add_parser("sample", help="generate text from a charlm checkpoint")
    sample.add_argument("--checkpoint", type=Path, default=Path("runs/charlm/charlm.safetensors"))
    sample.add_argument("--length", type=_positive_int, default=400)
    sample.add_argument("--prime", default="def ")
    sample.add_argument("--temperature", type=_positive_float, default=0.8)
    sample.add_argument("--seed", type=_non_negative_int, default=None)
    _device_option(sample, default="cpu")
    sample.set_defaults(run=_sample)
    return parser


def _device_option(parser: argparse.ArgumentParser, *, default: str, extra: tuple[str, ...] = (),
                   help_text: str = "cpu, cuda or cuda:N", indexed: bool = True) -> None:
    """The one ``--device`` argument of every command: validated like ``rnn_xp.RNN(device=...)``."""

    def device(text: str) -> str:
        if text in extra:
            return text
        from rnn_xp._device import parse_device

        try:
            parsed = parse_device(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not indexed and parsed.index != 0:
            msg = f"this command runs on cpu or cuda (the current GPU); got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return text if indexed else parsed.kind

    parser.add_argument("--device", type=device, default=default, help=f"{help_text} (default {default})")


def _config_class(example: str) -> type:
    from rnn_xp.training.adding import AddingConfig
    from rnn_xp.training.charlm import CharLMConfig

    return CharLMConfig if example == "charlm" else AddingConfig


def _add_fields(parser: argparse.ArgumentParser, example: str) -> None:
    """One --option per field of the example's config dataclass, with its default."""
    import dataclasses

    for spec in dataclasses.fields(_config_class(example)):
        default = spec.default
        if spec.name == "device":
            _device_option(parser, default=str(default))
            continue
        if spec.name == "seed":
            kind: Any = _non_negative_int
        elif isinstance(default, int) or spec.name == "max_updates":
            kind = _positive_int
        elif isinstance(default, float):
            kind = _positive_float
        else:
            kind = str
        parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=kind, default=default,
                            help=f"default {default}")


def _train(options: argparse.Namespace) -> int:
    import dataclasses

    config_class = _config_class(options.example)
    try:
        config = config_class(**{f.name: getattr(options, f.name) for f in dataclasses.fields(config_class)})
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    if getattr(config, "text", None) is not None:
        _readable_text(Path(config.text))
    _writable_folder(Path(config.out), "--out")
    from rnn_xp.training import adding, charlm
    from rnn_xp.training.checkpoint import CheckpointError

    try:
        summary = (charlm.train if options.example == "charlm" else adding.train)(config, resume=options.resume)
    except CheckpointError as error:  # only --resume reads a checkpoint, before any training
        raise UsageError(f"--resume: {error}") from None
    out = Path(config.out) / f"{options.example}-summary.json"
    out.write_text(json.dumps(summary) + "\n")
    print(f"wrote {out}" + (f" and {summary['plot']}" if summary.get("plot") else ""))
    return 130 if summary.get("interrupted") else 0


def _readable_text(path: Path) -> None:
    """--text must be a non-empty UTF-8 text file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"--text {str(path)!r} cannot be read ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--text {str(path)!r} is not UTF-8 text") from None
    if len(text.strip()) < 2:
        raise UsageError(f"--text {str(path)!r} holds no text to train on")


def _sample(options: argparse.Namespace) -> int:
    from rnn_xp.training.charlm import sample
    from rnn_xp.training.checkpoint import CheckpointError

    try:
        text = sample(options.checkpoint, length=options.length, prime=options.prime,
                      temperature=options.temperature, seed=options.seed, device=options.device)
    except (CheckpointError, OSError, ValueError) as error:
        raise UsageError(f"--checkpoint: {error}") from None
    print(text)
    return 0


def _info(options: argparse.Namespace) -> int:
    from rnn_xp.benchmark.machine import describe, format_text

    description = describe()
    print(json.dumps(description, indent=1) if options.json else format_text(description))
    return 0


def _bench(options: argparse.Namespace) -> int:
    if options.dask is not None:
        from rnn_xp.dask.bench import run_cli

        _writable_folder(options.out, "--out")
        try:
            return run_cli(options)
        except ConnectionError as error:
            raise UsageError(f"--dask: {error}") from None
    from rnn_xp.benchmark import plots, results
    from rnn_xp.benchmark.machine import cpu_model, gpus
    from rnn_xp.benchmark.sweep import ALL_PEERS, CUDA_EXTRA, FULL, QUICK, SweepConfig, run_sweep

    peers = [p.strip() for p in options.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in ALL_PEERS]
    if unknown:
        raise UsageError(f"--peers must be among {', '.join(ALL_PEERS)}; got {', '.join(unknown)}")
    _writable_folder(options.out, "--out")
    present = gpus()
    if options.device == "cuda" and not present:
        raise UsageError("--device cuda needs CuPy and an NVIDIA GPU; none found (see `rnn-xp info`)")
    devices = ["cpu", "cuda"] if options.device == "all" else [options.device]
    if options.device == "all" and not present:
        devices = ["cpu"]
        print("rnn-xp bench: no GPU found; measuring the CPU only", file=sys.stderr)
    sizes = QUICK if options.quick else FULL
    default_grid = not (options.quick or options.seq_lens or options.batches or options.hidden)
    config = SweepConfig(
        devices=devices,
        seq_lens=options.seq_lens or sizes["seq_lens"],
        batches=options.batches or sizes["batches"],
        hidden=options.hidden or sizes["hidden"],
        input_size=options.input_size,
        peers=peers,
        dtype=options.dtype,
        directions=("fwd", "train") if options.direction == "both" else (options.direction,),
        quick=options.quick,
        max_seconds=options.max_seconds if options.max_seconds is not None else (0.5 if options.quick else 2.0),
        extra_cases=CUDA_EXTRA if default_grid and devices == ["cuda"] else (),
    )
    hardware = present[0]["name"] if "cuda" in devices else cpu_model()
    stem = options.name or f"{_slug(hardware)}-{'quick' if options.quick else 'full'}"
    result = run_sweep(config)
    paths = results.save(result, options.out, stem)
    figures = [] if options.no_plots else plots.draw(result, options.out, stem)
    print(results.markdown(result))
    for path in [*paths.values(), *figures]:
        print(f"wrote {path}")
    if not options.no_plots and not figures:
        print("no plots: matplotlib is not installed (pip install 'rnn-xp[plot]')")
    if result["interrupted"]:
        print("interrupted: kept the rows measured before Ctrl-C", file=sys.stderr)
        return 130
    return 0


def _compare(args: Sequence[str]) -> int:
    from rnn_xp.benchmark import results

    parser = _Parser(prog="rnn-xp bench compare", description="per-row time ratios of two runs")
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    options = parser.parse_args(args)
    try:
        first, second = results.load(options.first), results.load(options.second)
    except ValueError as error:
        return _report(str(error))
    ratios = results.compare(first, second)
    print(results.format_comparison(ratios, options.first.name, options.second.name))
    return 0 if ratios else 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "machine"


if __name__ == "__main__":
    sys.exit(main())
