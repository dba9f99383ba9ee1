"""Shared fixtures: the read-only data in ../shared and small real configurations."""

from __future__ import annotations

from pathlib import Path

import dask.config
import pytest

from pystilt_dask.config import ModelConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _scratch_under_pytest_tmp(tmp_path_factory):
    """Keep HYSPLIT work directories (and failed ones) inside pytest's temporary tree."""
    with dask.config.set({"stilt.compute-root": str(tmp_path_factory.mktemp("compute"))}):
        yield


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder beside the checkout (real met, HYSPLIT runs, R-STILT files)."""
    if not (SHARED / "met").is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (real HRRR met, golden files)")
    return SHARED


@pytest.fixture(scope="session")
def hrrr_met(shared: Path) -> dict:
    """MetConfig fields for the two real HRRR ARL files (2019-05-30 00–11 UTC)."""
    return {"directory": str(shared / "met"), "file_format": "%Y%m%d_%H", "file_tres": "6h"}


@pytest.fixture
def hrrr_config(hrrr_met: dict) -> ModelConfig:
    """A small seeded configuration on the real met: 50 particles, 2 h backward."""
    return ModelConfig.from_dict(
        {"mets": {"hrrr": hrrr_met}, "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7}}
    )
