"""The documentation runs: every ```python block of README.md and of the pages in docs/, each in a fresh
interpreter; the docstring examples of the public modules; and the README's benchmark tables are what the committed
results render.

Blocks are self-contained (each imports what it uses), so a reader can copy any one of them alone; each runs as its
own ``python -c`` in an empty directory. A block preceded by ``<!-- test: requires NAME ... -->`` is skipped, with
the reason, where a package it names is not installed. A block followed by ``prints`` and a plain fenced block must
print exactly that.
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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
_REQUIRES = re.compile(r"^<!-- test: requires ([\w .-]+) -->$")


@dataclass(frozen=True)
class Block:
    page: str  # the file, relative to the repository
    line: int  # 1-based line of the opening fence
    code: str
    requires: tuple[str, ...]
    prints: str | None


def python_blocks(text: str, page: str = "README.md") -> list[Block]:
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
        blocks.append(Block(page, start + 1, "\n".join(lines[start + 1 : end]) + "\n",
                            tuple(marker.group(1).split()) if marker else (), prints))
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page.read_text(), str(page.relative_to(ROOT)))]


def test_every_python_block_is_found() -> None:
    assert len(BLOCKS) == sum(page.read_text().count("```python") for page in PAGES) >= 15
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/getting-started.md", "docs/frameworks.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.page}:{b.line}" for b in BLOCKS])
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    missing = [name for name in block.requires if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"a documentation block needs {', '.join(missing)}, which is not installed")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", block.code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{block.page} block at line {block.line} failed:\n{result.stderr}"
    if block.prints is not None:
        assert result.stdout == block.prints, f"{block.page} block at line {block.line} printed:\n{result.stdout}"


def test_the_parser_reads_markers_and_expected_output() -> None:
    text = "x\n\n<!-- test: requires torch jax -->\n```python\nprint(1)\n```\n\nprints\n\n```\n1\n```\n"
    text += "```python\nimport os\n```\n"
    first, second = python_blocks(text)
    assert (first.page, first.line, first.code, first.requires, first.prints) == ("README.md", 4, "print(1)\n", ("torch", "jax"), "1\n")
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


def _bench_tables() -> Any:
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "docs" / "_ext" / "bench_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_benchmark_tables_are_what_the_committed_results_render() -> None:
    bench_tables = _bench_tables()
    text = README.read_text()
    assert len(bench_tables.MARKED.findall(text)) >= 2
    assert bench_tables.readme_with_tables(text) == text, (
        "README.md's benchmark tables differ from bench/results/*.json: run python docs/_ext/bench_tables.py --readme")


def test_every_generated_table_renders(tmp_path: Path) -> None:
    paths = _bench_tables().generate(tmp_path)
    assert paths and all(path.read_text().strip() for path in paths)
