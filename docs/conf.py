"""Sphinx configuration: numpydoc API reference from the docstrings, Markdown pages (MyST), and the benchmark tables
rendered from bench/results/*.json at build time (_ext/bench_tables.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import rnn_xp  # noqa: E402

project = "rnn_xp"
author = "the rnn_xp authors"
copyright = "the rnn_xp authors"
release = version = rnn_xp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "bench_tables",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
root_doc = "index"

# The optional dependencies are not needed to build the reference: their modules are mocked.
autodoc_mock_imports = ["cupy", "torch", "jax", "onnx", "onnxruntime", "dask", "distributed", "cloudpickle", "keras",
                        "numba", "tqdm", "matplotlib"]
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

html_theme = "pydata_sphinx_theme"
html_title = f"rnn_xp {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
