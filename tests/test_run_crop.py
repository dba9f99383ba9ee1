"""``execution.crop``: one crop task per batch, the batch's simulations (every realization) on it.

The real ``hycs_std`` on idealized met (the package's writer, 81 x 81 cells of
0.05° around Salt Lake City), two receptors of one hour cut to a box of 80 km
around them (about 15 km travelled in the 2 hours back at 2.2 m/s); the same
project without the crop is the reference.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import arlmet
import numpy as np
import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.execution.crops import CROPS_FOLDER, batches
from pystilt_dask.meteorology.idealized import write_idealized_met
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor

RECEPTORS = [
    PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5),
    PointReceptor(time="2019-05-30 10:30", longitude=-111.9, latitude=40.7, altitude=5),
]


@pytest.fixture(scope="module")
def wide_met(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("wide-met")
    for path in write_idealized_met(
        folder, datetime(2019, 5, 30), 12, center=(-111.9, 40.75), half_width_deg=2.0,
        resolution_deg=0.05, u=2.0, v=1.0,
    ):  # fmt: skip
        path.chmod(0o444)
    return {"directory": str(folder), "file_format": "%Y%m%d_%H"}


def project(idealized_met, folder: Path, crop: dict | None, **extra) -> Model:
    config = ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "realizations": 2},
            "execution": {"crop": crop} if crop else {},
            "output": str(folder),
            **extra,
        }
    )
    return Model(config.output, RECEPTORS, config)


def test_a_batch_runs_on_one_crop(wide_met, tmp_path, client):
    cropped = project(wide_met, tmp_path / "cropped", {"reach_km": 80})
    run = cropped.plan()
    assert len(run.crops.members) == 1 and len(run) == 4
    keys = {d.key for d in run.to_delayed()}
    assert len(keys) == 4  # the simulations; their crop is one dependency of them all
    graph = dict(run.to_delayed()[0].dask)
    assert sum(str(k).startswith("stilt-crop-") for k in graph) == 1
    states = run.execute(client, quiet=True)
    assert set(states.values()) == {"complete"} and len(states) == 4

    (cut,) = (tmp_path / "cropped" / CROPS_FOLDER).iterdir()  # one crop for the batch
    (piece,) = (cut / "idealized").glob("2019*")  # the file the 08:00-10:30 runs read
    source = Path(wide_met["directory"]) / piece.name
    with arlmet.File(source) as whole, arlmet.File(piece) as part:
        assert part.grid.nx * part.grid.ny < whole.grid.nx * whole.grid.ny / 2

    plain = project(wide_met, tmp_path / "plain", None)
    assert set(plain.run(client=client, quiet=True).values()) == {"complete"}
    for receptor in RECEPTORS:
        for k in (0, 1):
            mine = cropped.trajectories.load(receptor.sim_id, realization=k)
            reference = plain.trajectories.load(receptor.sim_id, realization=k)
            assert len(mine) == len(reference) > 0
            # The same data on a cut grid: positions to well under a cell (0.05°);
            # measured at most 0.0007° (longitude) and 0.0005° (latitude).
            assert np.abs(mine["long"] - reference["long"]).max() <= 0.001
            assert np.abs(mine["lati"] - reference["lati"]).max() <= 0.001
    assert len(cropped.plan()) == 0


def test_a_failed_crop_fails_its_batch(idealized_met, tmp_path, client):
    model = project(idealized_met, tmp_path / "store", {"reach_km": 30})  # too few cells
    states = model.run(client=client, quiet=True)
    assert set(states.values()) == {"failed"} and len(states) == 4
    for receptor in RECEPTORS:
        for k in (0, 1):
            failure = model.simulations.failure(receptor.sim_id, realization=k)
            assert "cannot be cropped" in failure["message"], failure


def test_batches_split_by_met_window_and_size():
    times = ["2019-05-30 10:00", "2019-05-30 23:59", "2019-05-31 00:00", "2019-05-30 11:00"]
    grouped = batches(["a", "b", "c", "d"], times, ["m"] * 4, 24, 2)
    assert grouped == {
        "m-20190530T00-0": ("a", "d"),
        "m-20190530T00-1": ("b",),
        "m-20190531T00-0": ("c",),
    }


def test_a_crop_needs_every_member_to_run_as_long(idealized_met, tmp_path):
    model = project(
        idealized_met, tmp_path / "store", {"reach_km": 30},
        variants={"longer": {"hysplit": {"n_hours": -3}}},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"execution.crop cuts the met for hysplit.n_hours -2"):
        model.plan()
