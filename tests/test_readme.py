"""The README's Python snippets run as written, on a fresh demo project."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pystilt_dask.demo import make_demo_project

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize(
    "snippet",
    [
        # A snippet building a SLURMCluster submits jobs: it needs a running Slurm.
        pytest.param(snippet, marks=pytest.mark.slurm) if "SLURMCluster" in snippet else snippet
        for snippet in SNIPPETS
    ],
    ids=[f"snippet{i}" for i in range(len(SNIPPETS))],
)
def test_readme_snippet_runs(snippet, tmp_path, request, env):
    if "SLURMCluster" in snippet:
        request.getfixturevalue("slurm")
    make_demo_project(tmp_path / "demo-project", 3)
    (tmp_path / "snippet.py").write_text(snippet)
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
