"""The ``rnn-xp`` command: ``info``, ``bench``, ``bench compare``, ``tune``, ``train``, ``sample`` (or
``python -m rnn_xp``)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import textwrap
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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help, except where there is none to show (flags, "chosen for you");
    in descriptions and epilogs, paragraphs with indented lines (examples) keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)


class _Parser(argparse.ArgumentParser):
    """Bad input: one line ``rnn-xp: error: …`` on stderr and exit status 2 (no usage block)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        _fail(message)


class _DeprecatedAlias(argparse.Action):
    """An option with an old name that still works: using the old name prints a one-line warning on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.old, self.new = option_strings[-1], option_strings[0]
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string == self.old:
            print(f"rnn-xp: warning: {self.old} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


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
        raise argparse.ArgumentTypeError("needs dask and distributed: pip install 'dask[array]' distributed") from None
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


BENCH_EPILOG = """\
compare two runs:
  rnn-xp bench compare A.json B.json
      per-row time ratios B/A of every implementation timed in both runs, and one geometric mean per
      implementation (see `rnn-xp bench compare --help`)

Results go to --out (default bench/runs/, which git ignores); the project's reference results are in
bench/results/ (reference-*). The run ends with a verdict: where rnn_xp beats each peer and where not, the
GPU/CPU crossover when a GPU is present, and the fraction of the machine's GEMM peak reached."""


def _parser() -> argparse.ArgumentParser:
    from rnn_xp.benchmark.sweep import ALL_PEERS, PEERS_BY_DEVICE

    parser = _Parser(prog="rnn-xp", description="rnn_xp: a vanilla RNN on NumPy and CuPy.")
    commands = parser.add_subparsers(dest="command")

    info = commands.add_parser("info", help="versions, CPU, BLAS, GPUs and available paths",
                               description="What this machine has: versions, CPU, BLAS, GPUs, available paths.")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(run=_info)

    bench = commands.add_parser(
        "bench",
        help="sweep sequence lengths x batches x hidden sizes on CPU/GPU against peers "
        "(`rnn-xp bench compare A.json B.json` compares two runs)",
        description="Sweep sequence lengths x batch sizes x hidden sizes on each device against every peer "
        "installed; write JSON, a Markdown table and PNG plots; end with a verdict.",
        epilog=BENCH_EPILOG,
    )
    _device_option(bench, default="all", extra=("all",), help_text="where to run: cpu, cuda (the current GPU), or "
                   "all (every device present)", indexed=False)
    bench.add_argument("--quick", action="store_true",
                       help="the small sweep of `make bench` (T 16/64/256, B 1/16/64, H 64/256; minutes on a 2-core "
                       "CPU) instead of the full one")
    bench.add_argument("--out", type=Path, default=Path("bench/runs"), help="folder for the JSON, table and plots")
    bench.add_argument("--name", type=_file_stem, default=None,
                       help="file stem of the results (default: the CPU or GPU model, then quick or full)")
    by_device = "; ".join(f"{', '.join(names)} ({device.upper() if device == 'cpu' else 'GPU'})"
                          for device, names in PEERS_BY_DEVICE.items())
    bench.add_argument("--peers", default=",".join(ALL_PEERS),
                       help=f"comma-separated peers to time against rnn_xp: {by_device}")
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="floating-point type")
    bench.add_argument("--seq-lens", type=_positive_int, nargs="+", default=None, metavar="T",
                       help="sequence lengths (default: those of --quick or of the full sweep)")
    bench.add_argument("--batches", type=_positive_int, nargs="+", default=None, metavar="B",
                       help="batch sizes (default: those of --quick or of the full sweep)")
    bench.add_argument("--hidden", type=_positive_int, nargs="+", default=None, metavar="H",
                       help="hidden sizes (default: those of --quick or of the full sweep)")
    bench.add_argument("--input-size", type=_positive_int, default=64, metavar="I", help="input size of every case")
    bench.add_argument("--direction", choices=["fwd", "train", "both"], default="both",
                       help="forward only (fwd), forward+backward (train), or both")
    bench.add_argument("--max-seconds", type=_positive_float, default=None,
                       help="timing budget per implementation and row (default: 0.5 with --quick, else 2)")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--dask", type=_dask_target, default=None, metavar="ADDRESS|local:N",
                       help="instead: batch-inference throughput of rnn_xp.dask against the number of workers of the "
                       "scheduler at ADDRESS, or of N local worker processes (uses --seq-lens, --batches, --hidden, "
                       "--input-size, --dtype, --max-seconds, --out, --name)")
    bench.set_defaults(run=_bench)

    tune = commands.add_parser(
        "tune", help="time this machine's loops once and write a plan file that later runs load (opt-in)",
        description="Time the CPU loops (and the GPU paths, when a GPU is present) on this machine over a grid of "
        "batch and hidden sizes, and write the choices to a plan file. Every later process loads it on its first "
        "call; without one, rnn_xp picks loops by a fixed rule. Results stay deterministic: the plan is an input.",
        epilog="Where the plan goes and is read from: --out, else $RNN_XP_PLAN, else "
        "$XDG_CACHE_HOME/rnn_xp/plan.json (~/.cache/rnn_xp/plan.json). RNN_XP_PLAN=none ignores any plan.",
    )
    tune.add_argument("--out", type=Path, default=None, help="the plan file to write")
    tune.add_argument("--quick", action="store_true",
                      help="float32 only, one direction, a short timing budget (about a minute on a 2-core CPU)")
    tune.add_argument("--budget", type=_positive_float, default=0.1,
                      help="seconds of timing per loop and shape (more: steadier choices)")
    tune.set_defaults(run=_tune)

    train = commands.add_parser("train", help="train an example: charlm (text) or adding (many-to-one)",
                                description="Train an example model; every option has a default.")
    examples = train.add_subparsers(dest="example", required=True)
    charlm = examples.add_parser("charlm", help="character-level language model on the stdlib sources",
                                 description="A character-level language model: Embedding + RNN + Linear, "
                                 "trained with Adam on the Python standard library's sources (or --text).")
    _add_fields(charlm, "charlm")
    charlm.add_argument("--resume", type=Path, default=None, help="continue from this charlm checkpoint")
    charlm.set_defaults(run=_train)
    adding = examples.add_parser("adding", help="the adding problem (regression over long sequences)",
                                 description="The adding problem: sum the two marked values of a long sequence "
                                 "(many-to-one regression); always answering 1 scores MSE 0.167.")
    _add_fields(adding, "adding")
    adding.add_argument("--resume", type=Path, default=None, help="continue from this adding checkpoint")
    adding.set_defaults(run=_train)

    sample = commands.add_parser("sample", help="generate text from a charlm checkpoint",
                                 description="Generate text from a charlm checkpoint, one character at a time.")
    sample.add_argument("--checkpoint", type=Path, default=Path("runs/charlm/charlm.safetensors"),
                        help="a checkpoint written by `rnn-xp train charlm`")
    sample.add_argument("--length", type=_positive_int, default=400, help="characters to generate after the prime")
    sample.add_argument("--prime", default="def ", help="text to start from, printed first (default: %(default)r)")
    sample.add_argument("--temperature", type=_positive_float, default=0.8,
                        help="softmax temperature: below 1 safer, above 1 more varied")
    sample.add_argument("--seed", type=_non_negative_int, default=None,
                        help="random seed of the sampling (default: a fresh one each run)")
    _device_option(sample, default="cpu")
    sample.set_defaults(run=_sample)
    return parser


def _device_option(parser: argparse.ArgumentParser, *, default: str, extra: tuple[str, ...] = (),
                   help_text: str = "where to run: cpu, cuda, or cuda:N (the N-th GPU)", indexed: bool = True) -> None:
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

    choices = ["cpu", "cuda", *(["cuda:N"] if indexed else []), *extra]
    parser.add_argument("--device", type=device, default=default, metavar="{" + ",".join(choices) + "}",
                        help=help_text)


# What each field of the examples' configs means, for --help (tests check that every option has one).
FIELD_HELP = {
    "embedding": "size of the character embedding",
    "hidden": "hidden size H of the RNN",
    "layers": "number of stacked RNN layers",
    "steps": "truncation length T: characters per training sequence (back-propagation runs through T steps)",
    "batch": "sequences per update (batch size B)",
    "lr": "Adam learning rate",
    "clip": "clip the gradients' global norm to this",
    "sampler": "windows: independent random windows from a zero state; streams: truncated BPTT over B document "
               "streams, the state carried across chunks",
    "init": "identity: relu with W_hh = I and zero biases (IRNN, learns); torch: tanh with torch's uniform init "
            "(for comparison: stays at the baseline)",
    "minutes": "training time budget (evaluation and checkpoint come on top)",
    "max_updates": "stop after this many updates (default: only the time budget stops)",
    "eval_every_s": "seconds between held-out evaluations",
    "eval_chunks": "held-out chunks per periodic evaluation (of steps x batch characters each)",
    "seed": "random seed of the weights and the batches",
    "dtype": "floating-point type",
    "text": "a UTF-8 text file to train on (default: the Python standard library's .py sources)",
    "out": "folder for the checkpoint, summary JSON and loss plot",
}
SEQ_LEN_HELP = "sequence length T: steps per sequence, one marked value in each half (--steps: its deprecated name)"


def _config_class(example: str) -> type:
    from rnn_xp.training.adding import AddingConfig
    from rnn_xp.training.charlm import CharLMConfig

    return CharLMConfig if example == "charlm" else AddingConfig


def _add_fields(parser: argparse.ArgumentParser, example: str) -> None:
    """One --option per field of the example's config dataclass, with its default, meaning and choices."""
    import dataclasses

    from rnn_xp.training.adding import INITS
    from rnn_xp.training.charlm import SAMPLERS

    choices: dict[str, Sequence[str]] = {"sampler": sorted(SAMPLERS), "init": INITS, "dtype": ("float32", "float64")}
    for spec in dataclasses.fields(_config_class(example)):
        default = spec.default
        if spec.name == "device":
            _device_option(parser, default=str(default))
            continue
        if example == "adding" and spec.name == "steps":
            parser.add_argument("--seq-len", "--steps", dest="steps", action=_DeprecatedAlias, metavar="T",
                                type=_int_at_least(2, "a sequence length of at least 2 (one mark in each half)"),
                                default=default, help=SEQ_LEN_HELP)
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
                            choices=choices.get(spec.name), help=FIELD_HELP.get(spec.name))


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
    from rnn_xp.benchmark.verdict import verdict

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
        extra_cases=CUDA_EXTRA if default_grid and "cuda" in devices else (),
    )
    hardware = present[0]["name"] if "cuda" in devices else cpu_model()
    stem = options.name or f"{results.file_stem(hardware)}-{'quick' if options.quick else 'full'}"
    result = run_sweep(config)
    paths = results.save(result, options.out, stem)
    figures = [] if options.no_plots else plots.draw(result, options.out, stem)
    print(results.markdown(result, with_verdict=False))
    for path in [*paths.values(), *figures]:
        print(f"wrote {path}")
    if not options.no_plots and not figures:
        print("no plots: matplotlib is not installed (pip install matplotlib)")
    print()
    print("\n".join(verdict(result)))
    if result["interrupted"]:
        print("interrupted: kept the rows measured before Ctrl-C", file=sys.stderr)
        return 130
    return 0


def _tune(options: argparse.Namespace) -> int:
    from rnn_xp import tuning

    path = options.out if options.out is not None else (tuning.plan_path() or tuning.default_path())
    _writable_folder(path.parent, "--out's folder")
    dtypes, counts = (("float32",), (1,)) if options.quick else (("float32", "float64"), (1, 2))
    plan = tuning.tune(path, dtypes=dtypes, directions=counts, budget=options.budget,
                       progress=lambda line: print(line, flush=True))
    names = {letter: loop for loop, letter in tuning.CPU_LETTERS.items()}
    for (dtype, directions), rows in sorted(plan.cpu.items()):
        for hidden, letters in sorted(rows.items()):
            loops = ", ".join(f"B={b} {names[c]}" for b, c in zip(plan.batches, letters, strict=True))
            print(f"{dtype}, {directions} direction(s), H={hidden}: {loops}")
    print(f"wrote {path}")
    return 0


def _compare(args: Sequence[str]) -> int:
    from rnn_xp.benchmark import results

    parser = _Parser(prog="rnn-xp bench compare",
                     description="Per-row time ratios second/first of every implementation timed in both runs "
                     "(rows matched by device, direction and case), then one geometric mean per implementation.")
    parser.add_argument("first", type=Path, help="a result JSON of `rnn-xp bench` (the baseline)")
    parser.add_argument("second", type=Path, help="a result JSON of `rnn-xp bench` (compared with the first)")
    options = parser.parse_args(args)
    try:
        first, second = results.load(options.first), results.load(options.second)
    except ValueError as error:
        return _report(str(error))
    ratios = results.compare(first, second)
    print(results.format_comparison(ratios, options.first.name, options.second.name))
    return 0 if ratios else 1


if __name__ == "__main__":
    sys.exit(main())
