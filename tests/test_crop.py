"""Met crops: cut once per batch, HYSPLIT's particles on them, particles that leave them refused.

The synthetic domain is idealized met (5 m/s westerly, 2 m/s southerly, wind
growing 30 % per km) on a 0.05° grid of 12° × 12° (241 × 241 cells, within
HYSPLIT's limits), 12 hours in two 6-hourly files; runs are the real ``hycs_std``,
100 particles 6 hours back (about 120 km travelled).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import arlmet
import dask.config
import numpy as np
import pandas as pd
import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import MeteorologyError
from pystilt_dask.meteorology.coverage import EDGE
from pystilt_dask.meteorology.crop import (
    Crop,
    crop_batch,
    crop_bbox,
    crop_met,
    cropped_config,
    read_crop,
)
from pystilt_dask.meteorology.files import run_window
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.trajectory import simulate_trajectories

SITE = (-100.0, 40.0)
RECEPTOR = PointReceptor(time="2024-07-01 10:00", longitude=SITE[0], latitude=SITE[1], altitude=5)
#: Enough for 6 hours at 5.4 m/s and the spread of the particles.
REACH_KM = 250.0


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> ModelConfig:
    folder = tmp_path_factory.mktemp("large-met")
    for path in write_idealized_met(
        folder, datetime(2024, 7, 1), 12, center=SITE, half_width_deg=6.0,
        resolution_deg=0.05, u=5.0, v=2.0, shear_per_km=0.3,
    ):  # fmt: skip
        path.chmod(0o444)
    return ModelConfig.from_dict(
        {
            "mets": {"large": {"directory": str(folder), "file_format": "%Y%m%d_%H"}},
            "hysplit": {"n_hours": -6, "numpar": 100, "seed": 3},
        }
    )


@pytest.fixture(scope="module")
def uncropped(config) -> pd.DataFrame:
    return simulate_trajectories(RECEPTOR, config).particles


def _crop(config: ModelConfig, bbox, destination: Path):
    window = run_window(RECEPTOR.time, config.hysplit.n_hours)
    (cropped,) = crop_met(config.archives("large"), window, bbox, str(destination))
    return cropped[1]


@pytest.mark.slow  # HYSPLIT on a 241 x 241 grid, cropped and not
def test_a_crop_sharing_the_grids_corner_gives_the_same_particles(config, uncropped, tmp_path):
    # West and south edges where the source grid's are: only the east and north are cut.
    met = _crop(config, (-106.0, 34.0, -98.0, 42.0), tmp_path)
    with arlmet.File(next(Path(met.directory).glob("20240701_06"))) as cut:
        assert (cut.grid.nx, cut.grid.ny) == (161, 161)
    pd.testing.assert_frame_equal(simulate_trajectories(RECEPTOR, config, met=met).particles,
                                  uncropped)  # fmt: skip


@pytest.mark.slow  # HYSPLIT on a 241 x 241 grid, cropped and not
def test_a_crop_around_the_receptors_moves_particles_by_rounding_only(config, uncropped, tmp_path):
    """HYSPLIT moves particles in grid units from the grid's corner, in single precision.

    A crop whose corner is elsewhere holds the same values at the same places
    (the data are equal, see below), yet each step's position is rounded at
    another magnitude of grid units: measured, up to 0.0024° of longitude and
    0.0002° of latitude after 6 h (about 200 m out of 120 km travelled), and
    nothing else differs on this met (heights, foot, mixed layer).
    """
    (met,) = crop_batch([(RECEPTOR.time, RECEPTOR.release_points)], config, "large", REACH_KM,
                        str(tmp_path))  # fmt: skip
    source = Path(config.mets["large"].directory) / "20240701_06"
    with arlmet.File(source) as whole, arlmet.File(Path(met[1].directory, source.name)) as cut:
        assert cut.grid.nx * cut.grid.ny < whole.grid.nx * whole.grid.ny / 5
        window = whole.grid.window_from_bbox(read_crop(met[1]).bbox)
        record = whole["2024-07-01 08:00"]
        for part in cut["2024-07-01 08:00"].records:
            np.testing.assert_array_equal(
                part.data, record[part.level, part.variable].data[window.y_slice, window.x_slice]
            )
    cropped = simulate_trajectories(RECEPTOR, config, met=met[1]).particles
    assert cropped.shape == uncropped.shape
    assert (cropped["long"] - uncropped["long"]).abs().max() <= 0.005
    assert (cropped["lati"] - uncropped["lati"]).abs().max() <= 0.005
    others = [c for c in uncropped.columns if c not in ("long", "lati")]
    pd.testing.assert_frame_equal(cropped[others], uncropped[others])


def test_a_crop_is_cut_once_and_described(config, tmp_path):
    batch = [(RECEPTOR.time, RECEPTOR.release_points)]
    (first,) = crop_batch(batch, config, "large", REACH_KM, str(tmp_path))
    folder = Path(first[1].directory)
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert sorted(stamps) == ["20240701_00", "20240701_06", "CROP.json", "MANIFEST.sha256"]
    assert crop_batch(batch, config, "large", REACH_KM, str(tmp_path)) == [first]
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == stamps
    crop = read_crop(first[1])
    assert crop.source == config.mets["large"].directory
    assert crop.bbox == pytest.approx(crop_bbox(RECEPTOR.release_points, REACH_KM))
    assert read_crop(config.mets["large"]) is None


def test_a_crop_too_small_fails_the_run_clearly(config, tmp_path):
    # 95 km around the receptor (the least ARL can hold): the particles travel about 120 km.
    (met,) = crop_batch([(RECEPTOR.time, RECEPTOR.release_points)], config, "large", 95.0,
                        str(tmp_path))  # fmt: skip
    with pytest.raises(MeteorologyError) as caught:
        simulate_trajectories(RECEPTOR, config, met=met[1])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{RECEPTOR.sim_id}: particle ")
    assert f"reached the edge of the met crop {met[1].directory} at (" in message
    assert message.endswith("crop with a longer reach")


def test_a_crop_in_an_object_store_is_fetched_and_verified(config, tmp_path, s3_options):
    local = _crop(config, crop_bbox(RECEPTOR.release_points, REACH_KM), tmp_path / "local")
    window = run_window(RECEPTOR.time, config.hysplit.n_hours)
    bucket = f"s3://stilt-test/crops-{uuid.uuid4().hex[:8]}"
    bbox = crop_bbox(RECEPTOR.release_points, REACH_KM)
    ((_, remote),) = crop_met(config.archives("large"), window, bbox, bucket, s3_options)
    assert remote.directory.startswith(bucket) and read_crop(remote) == read_crop(local)
    with dask.config.set({"stilt.met-cache.directory": str(tmp_path / "cache")}):
        on_s3 = simulate_trajectories(RECEPTOR, config, met=remote)
    pd.testing.assert_frame_equal(
        on_s3.particles, simulate_trajectories(RECEPTOR, config, met=local).particles
    )
    assert all(path.is_relative_to(tmp_path / "cache") for path in on_s3.met_files)


def test_edges_shared_with_the_source_are_no_cut():
    source = arlmet.Grid(
        arlmet.Projection(
            pole_lat=44.0, pole_lon=264.0, tangent_lat=1.0, tangent_lon=1.0, grid_size=0.0,
            orientation=0.0, cone_angle=0.0, sync_x=1.0, sync_y=1.0, sync_lat=30.0,
            sync_lon=250.0,
        ),
        15, 15,
    )  # fmt: skip
    # Columns 0-9 and rows 5-14 of the source: the west and north edges are the source's.
    crop = Crop("src", (-110.0, 35.0, -101.0, 44.0), ((source, arlmet.GridWindow(0, 10, 5, 15)),))
    lon = np.array([-110.0, -110.0 + EDGE - 0.5, -101.0, -101.0 - EDGE, -105.0, -105.0])
    lat = np.array([40.0, 40.0, 40.0, 40.0, 44.0, 35.5 + EDGE])
    assert crop.safe(lon, lat).tolist() == [True, True, False, True, True, True]
    assert not crop.safe(np.array([-105.0]), np.array([35.0 + EDGE - 0.5]))[0]
    assert crop.to_json() == Crop.from_json(crop.to_json()).to_json()


@pytest.mark.slow  # HYSPLIT on a 241 x 241 grid, cropped and not
def test_a_batch_depends_on_one_crop_task(config, uncropped, tmp_path, client):
    """One crop task per batch; the batch's simulations take its result as their config."""
    receptors = [RECEPTOR, PointReceptor(time="2024-07-01 09:00", longitude=-99.8,
                                         latitude=40.1, altitude=5)]  # fmt: skip
    batch = [(r.time, r.release_points) for r in receptors]
    crop = client.submit(cropped_config, config, "large", batch, REACH_KM, str(tmp_path),
                         pure=False)  # fmt: skip
    runs = [client.submit(simulate_trajectories, r, crop, "large", pure=False) for r in receptors]
    results = client.gather(runs)
    (cut,) = tmp_path.iterdir()  # one crop for the batch
    assert {path.parent.parent for run in results for path in run.met_files} == {cut}
    assert (results[0].particles["long"] - uncropped["long"]).abs().max() <= 0.005
    assert crop.result().mets["large"].directory == str(cut / "large")
