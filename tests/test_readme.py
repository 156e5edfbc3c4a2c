"""The documentation runs: every ```python block of README.md, each in a fresh interpreter, and the docstring
examples of the public modules.

README blocks are self-contained (each imports what it uses), so a reader can copy any one of them alone; each runs
as its own ``python -c`` in an empty directory. A block preceded by ``<!-- readme-test: requires NAME ... -->`` is
skipped, with the reason, where a package it names is not installed. A block followed by ``prints`` and a plain
fenced block must print exactly that.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_REQUIRES = re.compile(r"^<!-- readme-test: requires ([\w .-]+) -->$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    requires: tuple[str, ...]
    prints: str | None


def readme_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        start = index
        end = lines.index("```", start + 1)
        previous = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = _REQUIRES.match(previous)
        following = [i for i in range(end + 1, len(lines)) if lines[i].strip()][:2]
        prints = None
        if len(following) == 2 and lines[following[0]].strip() == "prints" and lines[following[1]].strip() == "```":
            output_end = lines.index("```", following[1] + 1)
            prints = "\n".join(lines[following[1] + 1 : output_end]) + "\n"
        blocks.append(Block(start + 1, "\n".join(lines[start + 1 : end]) + "\n",
                            tuple(marker.group(1).split()) if marker else (), prints))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_every_python_block_is_found() -> None:
    assert len(BLOCKS) == README.read_text().count("```python") >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    missing = [name for name in block.requires if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"README.md block at line {block.line} needs {', '.join(missing)}, which is not installed")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", block.code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"README.md block at line {block.line} failed:\n{result.stderr}"
    if block.prints is not None:
        assert result.stdout == block.prints, f"README.md block at line {block.line} printed:\n{result.stdout}"


def test_the_parser_reads_markers_and_expected_output() -> None:
    text = "x\n\n<!-- readme-test: requires torch jax -->\n```python\nprint(1)\n```\n\nprints\n\n```\n1\n```\n"
    text += "```python\nimport os\n```\n"
    first, second = readme_blocks(text)
    assert (first.line, first.code, first.requires, first.prints) == (4, "print(1)\n", ("torch", "jax"), "1\n")
    assert (second.code, second.requires, second.prints) == ("import os\n", (), None)


DOCUMENTED = ["rnn_xp.training", "rnn_xp.training.models", "rnn_xp.functional", "rnn_xp.layer",
              pytest.param("rnn_xp.torch", marks=pytest.mark.skipif(
                  importlib.util.find_spec("torch") is None, reason="rnn_xp.torch's example needs torch")),
              pytest.param("rnn_xp.onnx", marks=pytest.mark.skipif(
                  importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
                  reason="rnn_xp.onnx's examples need onnx and onnxruntime, which are not installed")),
              pytest.param("rnn_xp.loops.jax_scan", marks=pytest.mark.skipif(
                  importlib.util.find_spec("jax") is None, reason="the JAX loop's example needs jax (rnn-xp[peers])"))]


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert attempted > 0 and failed == 0, f"{failed} of {attempted} doctest examples of {module_name} failed"


def test_import_rnn_xp_then_training_works_and_training_is_imported_on_first_use() -> None:
    code = (
        "import sys, rnn_xp\n"
        "assert 'rnn_xp.training' not in sys.modules, 'import rnn_xp imported training'\n"
        "assert rnn_xp.training.Shuffler and rnn_xp.training.save_checkpoint and rnn_xp.training.load_checkpoint\n"
        "assert rnn_xp.training.CheckpointError and 'training' in dir(rnn_xp)\n"
        "try:\n    rnn_xp.nonexistent\nexcept AttributeError as error:\n    print(error)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "module 'rnn_xp' has no attribute 'nonexistent'\n"
