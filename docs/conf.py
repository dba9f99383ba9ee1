"""Sphinx configuration of the pystilt_dask documentation.

Build (what CI runs, through ``tests/test_docs.py``):
``python -m sphinx -W --keep-going -j auto -b html docs docs/_build/html`` (``-j``: the
notebooks execute side by side).

At build time this file writes two things that are never committed:

- ``_generated/config_reference.md``: the configuration reference, rendered from the
  pydantic models by ``_ext/config_reference.py`` (included by ``configuration.md``);
- ``notebooks/``: copies of ``../notebooks/*.ipynb`` and an index page listing them (a
  page saying there are none when that folder is empty or absent).

Notebooks are committed without outputs; the build executes them (myst-nb, a fresh
IPython kernel each, in a temporary directory) so that their pages show outputs and
figures, and a notebook that fails fails the build. ``hpc.ipynb`` is the exception: it
needs a Slurm cluster, which a docs build does not have; its page shows the code only
(``tests/test_notebooks.py`` runs it against the Slurm that ``.ci/run`` starts).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

from config_reference import write_reference  # noqa: E402

import pystilt_dask  # noqa: E402

project = "pystilt_dask"
author = "pystilt_dask contributors"
copyright = "pystilt_dask contributors, MIT licence"
release = version = getattr(pystilt_dask, "__version__", None) or "0.1.0"

extensions = [
    "myst_nb",  # Markdown (myst-parser) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

exclude_patterns = ["_build", "_generated", "_ext", ".gitignore", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# Notebooks: executed on every build, whatever outputs a copy holds; any error fails it.
nb_execution_mode = "force"
nb_execution_timeout = 600  # seconds per cell: guards against a hang only
nb_execution_raise_on_error = True
nb_execution_in_temp = True  # nothing a notebook writes lands in the docs tree
nb_execution_excludepatterns = ["notebooks/hpc.ipynb"]  # needs Slurm (see above)
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# Headings in notebooks written by others may skip a level; outputs may hold widget
# or Bokeh MIME types that have no static rendering. Neither should fail the build.
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # offline builds: no inventories are fetched

html_theme = "pydata_sphinx_theme"
html_title = "pystilt_dask"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# Every page is top-level (the header bar lists them): no left sidebar.
html_sidebars = {"**": []}


def _write_notebook_pages() -> None:
    source = HERE.parent / "notebooks"
    target = HERE / "notebooks"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    notebooks = sorted(source.glob("*.ipynb")) if source.is_dir() else []
    for path in notebooks:
        shutil.copy2(path, target / path.name)
    lines = [
        "# Notebooks",
        "",
        "Worked examples from the repository's `notebooks/` folder, executed when this",
        "site was built (on a `LocalCluster`). `hpc` needs a Slurm cluster, so its page",
        "shows the code without outputs; run it on a Slurm login node.",
        "",
    ]
    if notebooks:
        lines += ["```{toctree}", ":maxdepth: 1", "", *[p.stem for p in notebooks], "```", ""]
    else:
        lines += ["This build found no notebooks in `notebooks/`.", ""]
    (target / "index.md").write_text("\n".join(lines))


def _write_generated() -> None:
    generated = HERE / "_generated"
    generated.mkdir(exist_ok=True)
    write_reference(generated / "config_reference.md")


# Written when the configuration is read, before Sphinx lists the source files.
_write_generated()
_write_notebook_pages()
