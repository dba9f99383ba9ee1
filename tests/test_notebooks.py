"""Every notebook in notebooks/ runs top to bottom (nbclient, a real IPython kernel).

Each runs in its own temporary working directory, with ``TMPDIR`` there too (the
notebooks put their projects in ``tempfile.mkdtemp()``), so nothing is written
into the repository. ``hpc.ipynb`` needs the real Slurm (.ci/run starts one) and
skips without it; its first cell's own check is tested without Slurm.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TIMEOUT = 600  # seconds, per notebook (each cell also has this bound)


def _execute(name: str, workdir: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("TMPDIR", str(workdir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    before = set(NOTEBOOKS.iterdir())
    started = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT, f"{name} took {elapsed:.0f} s"
    assert set(NOTEBOOKS.iterdir()) <= before, "a notebook wrote into notebooks/"
    nbformat.write(notebook, workdir / name)  # executed, to look at after a failure
    print(f"{name}: {elapsed:.1f} s")
    return notebook


def _images(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_committed_notebooks_have_no_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["analysis.ipynb", "hpc.ipynb", "quickstart.ipynb"]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.timeout(TIMEOUT + 60)
def test_quickstart(tmp_path, monkeypatch):
    notebook = _execute("quickstart.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "Dask dashboard: http://127.0.0.1:" in text
    assert "'complete': 4" in text
    assert _images(notebook) == 3  # a footprint map, two more maps, the tracks


@pytest.mark.timeout(TIMEOUT + 60)
def test_analysis(tmp_path, monkeypatch):
    notebook = _execute("analysis.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "lazy: Array" in text  # the enhancement was a dask graph until .compute()
    assert _images(notebook) == 3  # the flux, the time series, the maps


@pytest.mark.slurm
@pytest.mark.timeout(TIMEOUT + 60)
def test_hpc(tmp_path, monkeypatch, slurm):
    notebook = _execute("hpc.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "'complete': 4" in text
    assert "Slurm job(s) ran Dask workers" in text
    assert "0 Slurm job(s)" not in text
    assert _images(notebook) == 1


def test_hpc_first_cell_detects_a_machine_without_slurm(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOKS / "hpc.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo
    with pytest.raises(RuntimeError, match="this notebook needs Slurm"):
        exec(first.source, {})


def _text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)
