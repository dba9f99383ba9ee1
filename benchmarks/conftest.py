"""Fixtures shared by the benchmark files.

* ``hrrr_met``: the real HRRR archive in ../shared (skips without it);
* ``day_particle_file``: a real 1000-particle × 24 h ``PARTICLE_STILT.DAT``,
  cached across sessions because HYSPLIT needs ~40 s to write it;
* ``bench_report``: both sides of every comparison, printed with their ratios
  at the end of the session (pytest-benchmark's table has times only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from pystilt_dask.config import HysplitConfig, MetConfig, ModelConfig
from pystilt_dask.defaults import compute_root
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import run_trajectory

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pystilt_dask_bench"

#: The side every comparison holds against a baseline (PYSTILT, a plain run…).
OURS = "pystilt_dask"

# The day-long run: the shared HRRR covers 12 h only, so it runs on idealized met.
# With the default 5 m/s westerly a backward day moves particles ~5.1° west of the
# receptor; a 7° half-width keeps them (and their turbulent spread) on the grid.
DAY_NUMPAR = 1000
DAY_HOURS = 24
DAY_SEED = 7
DAY_MET_START = datetime(2024, 7, 1)
DAY_MET_HOURS = 36  # 6 h of slack on both sides of the backward day
DAY_RECEPTOR = PointReceptor(time="2024-07-02 06:00", longitude=-100.0, latitude=40.0, altitude=5)


@pytest.fixture(scope="session")
def hrrr_met() -> dict:
    """MetConfig fields for the two real HRRR ARL files (2019-05-30 00–11 UTC)."""
    if not (SHARED / "met").is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (real HRRR met)")
    return {"directory": str(SHARED / "met"), "file_format": "%Y%m%d_%H", "file_tres": "6h"}


@dataclass(frozen=True)
class ParticleFile:
    """A PARTICLE_STILT.DAT and what produced it (the parsers need its columns)."""

    path: Path
    receptor: PointReceptor
    hysplit: HysplitConfig


@pytest.fixture(scope="session")
def day_particle_file(tmp_path_factory: pytest.TempPathFactory) -> ParticleFile:
    """A real 1000-particle × 24 h PARTICLE_STILT.DAT (~190 MB, 1.44 M rows), cached in CACHE.

    The cache name carries every setting that shapes the file; it is moved into
    place only once complete, so an interrupted session never leaves half a file.
    """
    hysplit = HysplitConfig(n_hours=-DAY_HOURS, numpar=DAY_NUMPAR, seed=DAY_SEED)
    path = CACHE / f"idealized_{DAY_NUMPAR}p_{DAY_HOURS}h_seed{DAY_SEED}" / "PARTICLE_STILT.DAT"
    if not path.is_file():
        met_dir = tmp_path_factory.mktemp("idealized-met")
        write_idealized_met(
            met_dir,
            DAY_MET_START,
            DAY_MET_HOURS,
            center=(DAY_RECEPTOR.longitude, DAY_RECEPTOR.latitude),
            half_width_deg=7.0,
        )
        config = ModelConfig(
            mets={"idealized": MetConfig(directory=str(met_dir), file_format="%Y%m%d_%H")},
            hysplit=hysplit,
        )
        root = compute_root()
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as work:
            particles = run_trajectory(DAY_RECEPTOR, config, workdir=work)
            # Every particle has a row every minute only if none left the grid.
            assert len(particles) == DAY_NUMPAR * DAY_HOURS * 60, "particles left the met grid"
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            shutil.copyfile(Path(work) / "PARTICLE_STILT.DAT", partial)
            partial.replace(path)
    return ParticleFile(path, DAY_RECEPTOR, hysplit)


@dataclass
class Report:
    """Metrics of each side of each comparison group, in recording order."""

    groups: dict[str, dict[str, dict[str, float | str]]] = field(default_factory=dict)

    def ours(self, group: str, **metrics: float | str) -> None:
        """Record pystilt_dask's side of ``group``."""
        self.groups.setdefault(group, {})[OURS] = metrics

    def baseline(self, group: str, side: str, **metrics: float | str) -> None:
        """Record the side ``side`` that pystilt_dask is compared with in ``group``."""
        self.groups.setdefault(group, {})[side] = metrics

    def lines(self) -> list[str]:
        lines = []
        for group, sides in self.groups.items():
            lines.append(group)
            for side, metrics in sides.items():
                values = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
                lines.append(f"  {side:>14}: {values}")
            ours = sides.get(OURS, {})
            for side, metrics in sides.items():
                if side == OURS:
                    continue
                for key, theirs in metrics.items():
                    mine = ours.get(key)
                    if isinstance(theirs, float) and isinstance(mine, float) and theirs:
                        inverse = f"{theirs / mine:.3g}" if mine else "inf"
                        lines.append(
                            f"  {key}: {OURS} / {side} = {mine / theirs:.3g}"
                            f"  ({side} / {OURS} = {inverse})"
                        )
        return lines


def _fmt(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else value


_REPORT = pytest.StashKey[Report]()


@pytest.fixture(scope="session")
def bench_report(request: pytest.FixtureRequest) -> Report:
    """The session's comparison report, printed by :func:`pytest_terminal_summary`."""
    return request.config.stash.setdefault(_REPORT, Report())


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.groups:
        return
    terminalreporter.section("benchmark comparisons (both sides, ratios)")
    for line in report.lines():
        terminalreporter.write_line(line)
