"""Sphinx configuration of fastopt's API reference (``pip install "fastopt[docs]"``).

Build: ``python -m sphinx -W -b html docs docs/_build/html``. The maths is
rendered by a local MathJax copied into the site (``sphinx-mathjax-offline``),
so the pages need no network. One page per optimizer is written from the
registry at build time (``docs/optimizers/``, not committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fastopt  # noqa: E402
from fastopt.rules import SPECS  # noqa: E402

project = "fastopt"
author = "the fastopt authors"
copyright = "2026, the fastopt authors"
release = version = fastopt.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx-mathjax-offline",  # copies MathJax 3 into _static and points mathjax_path at it
]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"fastopt {release}"
html_static_path: list[str] = []
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the NumPy-style docstrings say the types
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
nitpicky = True  # every cross-reference must resolve (-W turns a miss into an error)
nitpick_ignore = [
    ("py:func", "coefficient_record"),  # a helper of the private fastopt.rules._spec
]


def _optimizer_pages() -> None:
    """Write ``optimizers/<name>.rst`` for every registered optimizer (only when changed)."""
    out = HERE / "optimizers"
    out.mkdir(exist_ok=True)
    for name, spec in SPECS.items():
        cls = spec.class_name
        text = (f"{cls}\n{'=' * len(cls)}\n\n.. currentmodule:: fastopt\n\n.. autoclass:: {cls}\n\n"
                f"Registry name: ``{name!r}`` (``fastopt.OPTIMIZERS[{name!r}]``). Defaults: "
                + ", ".join(f"``{k}={v!r}``" for k, v in spec.defaults.items())
                + ".\n\nMethods and training-loop options: :class:`fastopt.Optimizer`.\n")
        page = out / f"{name}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)


_optimizer_pages()
