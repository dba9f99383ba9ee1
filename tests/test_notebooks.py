"""The notebooks in notebooks/: committed without outputs, and run top to bottom.

``quickstart.ipynb`` and ``analysis.ipynb`` run once per suite, in the docs build
(the ``docs_site`` fixture: myst-nb, a real IPython kernel each), and are checked
here on their executed copies and their pages. ``hpc.ipynb`` needs the real Slurm
(.ci/run starts one), which a docs build lacks: it runs here with nbclient, in its
own temporary working directory with ``TMPDIR`` there too (the notebooks put their
projects in ``tempfile.mkdtemp()``), so nothing is written into the repository;
its first cell's own check is tested without Slurm.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TIMEOUT = 600  # seconds per cell: guards against a hang only


def test_committed_notebooks_have_no_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "analysis.ipynb",
        "hpc.ipynb",
        "inversion.ipynb",
        "quickstart.ipynb",
        "satellite.ipynb",
    ]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


def _executed(docs_site: Path, name: str):
    """The copy of ``notebooks/<name>`` the docs build executed, and its page's HTML."""
    notebook = nbformat.read(docs_site.parent / "jupyter_execute" / "notebooks" / name, 4)
    page = (docs_site / "notebooks" / name).with_suffix(".html").read_text()
    return notebook, html.unescape(page)


@pytest.mark.timeout(1800)  # the docs build executes the notebooks
def test_quickstart(docs_site):
    notebook, page = _executed(docs_site, "quickstart.ipynb")
    text = notebook_text(notebook)
    assert "Dask dashboard: http://127.0.0.1:" in text
    assert "'complete': 4" in text and "'complete': 4" in page
    assert images(notebook) == 3  # a footprint map, two more maps, the tracks
    assert page.count("<img ") == 3  # the site shows them


@pytest.mark.timeout(1800)
def test_analysis(docs_site):
    notebook, page = _executed(docs_site, "analysis.ipynb")
    text = notebook_text(notebook)
    assert "lazy: Array" in text and "lazy: Array" in page  # a dask graph until .compute()
    assert images(notebook) == 3  # the flux, the time series, the maps
    assert page.count("<img ") == 3


@pytest.mark.slurm
def test_hpc(tmp_path, monkeypatch, slurm, env):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for name, value in env.items():  # the kernel imports the code under test
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend
    notebook = nbformat.read(NOTEBOOKS / "hpc.ipynb", as_version=4)
    before = set(NOTEBOOKS.iterdir())
    try:
        nbclient.NotebookClient(
            notebook, timeout=TIMEOUT, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # fmt: skip
    finally:
        nbformat.write(notebook, tmp_path / "hpc.ipynb")  # to look at after a failure
    assert set(NOTEBOOKS.iterdir()) <= before, "the notebook wrote into notebooks/"
    text = notebook_text(notebook)
    assert "'complete': 4" in text
    assert "Slurm job(s) ran Dask workers" in text
    assert "0 Slurm job(s)" not in text
    assert images(notebook) == 1


def test_hpc_first_cell_detects_a_machine_without_slurm(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOKS / "hpc.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo
    with pytest.raises(RuntimeError, match="this notebook needs Slurm"):
        exec(first.source, {})


def images(notebook) -> int:
    """PNG figures among the outputs of ``notebook``."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def notebook_text(notebook) -> str:
    """Everything ``notebook`` printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.timeout(1800)
def test_inversion(docs_site):
    notebook, page = _executed(docs_site, "inversion.ipynb")
    text = notebook_text(notebook)
    assert "recovered: the synthetic truth lies within the posterior uncertainty" in text
    assert "truth within 2 sigma of the posterior:" in page
    assert images(notebook) == 1 and page.count("<img ") == 1


@pytest.mark.timeout(1800)
def test_satellite(docs_site):
    notebook, page = _executed(docs_site, "satellite.ipynb")
    text = notebook_text(notebook)
    assert "lazy: Array" in text and "lazy: Array" in page  # modelled_columns stays a dask graph
    assert "'complete': 9" in text and "RMS residual:" in text
    assert images(notebook) == 2  # modelled vs observed, the plume map
    assert page.count("<img ") == 2
