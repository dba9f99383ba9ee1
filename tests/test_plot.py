"""Footprint maps (the ``foot.stilt`` accessor) and particle tracks, drawn for real.

Agg backend; real HYSPLIT runs and footprints of a two-receptor demo project.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from demo_helpers import run_demo  # noqa: E402
from matplotlib.collections import LineCollection, QuadMesh  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

import pystilt_dask as stilt  # noqa: E402
from pystilt_dask.accessor import StiltAccessorWarning, register  # noqa: E402
from pystilt_dask.plot import tracks  # noqa: E402


def test_register_takes_the_accessor_back_from_pystilt():
    pytest.importorskip("stilt")
    import stilt  # noqa: F401  (PYSTILT registers its own `stilt` accessor on import)
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StiltAccessorWarning)  # said once; expected here
        register()
    assert type(xr.DataArray([1.0]).stilt).__module__ == "pystilt_dask.accessor"


HAVE_CARTOPY = importlib.util.find_spec("cartopy") is not None


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> stilt.Model:
    return run_demo(tmp_path_factory.mktemp("demo"), 2)


@pytest.fixture(scope="module")
def foot(model):
    return model.footprints["default"].load()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _receptor_marks(ax) -> np.ndarray:
    lines = [line for line in ax.get_lines() if line.get_label() == "receptor"]
    assert len(lines) == 1
    return np.column_stack([lines[0].get_xdata(), lines[0].get_ydata()])


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, pystilt_dask; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_map_of_one_simulation(foot, tmp_path):
    sim = str(foot.simulation.values[0])
    ax = foot.stilt.plot(simulation=sim, coastlines=False)
    expected = foot.sel(simulation=sim).sum("lag").values

    mesh = _mesh(ax)
    assert isinstance(mesh.norm, LogNorm)
    assert mesh.norm.vmax == pytest.approx(expected.max())
    assert 0 < mesh.norm.vmin <= expected[expected > 0].min() * (1 + 1e-6)
    shown = mesh.get_array()
    assert shown.shape == expected.shape  # shading="nearest": one cell per value
    assert np.array_equal(~np.ma.getmaskarray(shown), expected > 0)  # zeros transparent
    np.testing.assert_allclose(shown.compressed(), expected[expected > 0], rtol=1e-6)

    receptor = foot.sel(simulation=sim)
    marks = _receptor_marks(ax)
    assert marks.tolist() == [
        [float(receptor.receptor_longitude), float(receptor.receptor_latitude)]
    ]
    assert ax.get_xlabel() == "longitude [degrees_east]"
    assert ax.get_ylabel() == "latitude [degrees_north]"
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == "STILT surface influence footprint [ppm m2 s umol-1]"
    assert ax.get_title() == f"{sim}, all layers"
    assert ax.get_xlim() == pytest.approx((-103.0, -98.0))
    assert ax.get_ylim() == pytest.approx((38.5, 41.5))
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_map_of_a_selection_sum_and_mean(foot):
    both = foot.sum("lag")
    ax = foot.stilt.plot(coastlines=False)  # two simulations: their sum
    shown = _mesh(ax).get_array()
    np.testing.assert_allclose(shown.compressed(), both.sum("simulation").values[~shown.mask])
    assert sorted(_receptor_marks(ax).tolist()) == [[-100.0, 40.0], [-99.5, 40.3]]
    assert ax.get_title() == "sum of 2 simulations, all layers"

    ax = foot.stilt.plot(how="mean", coastlines=False)
    shown = _mesh(ax).get_array()
    np.testing.assert_allclose(
        shown.compressed(), both.mean("simulation").values[~shown.mask], rtol=1e-6
    )


def test_map_of_one_layer_by_lag_or_time(foot):
    sim = str(foot.simulation.values[1])
    by_lag = foot.stilt.to_map(simulation=sim, lag=-1).compute()
    np.testing.assert_array_equal(by_lag.values, foot.sel(simulation=sim, lag=-1).values)
    layer_start = foot.sel(simulation=sim, lag=-1)["time"].values
    by_time = foot.stilt.to_map(simulation=sim, time=layer_start).compute()
    np.testing.assert_array_equal(by_time.values, by_lag.values)
    window = slice(layer_start - np.timedelta64(1, "h"), layer_start)
    two = foot.stilt.to_map(simulation=sim, time=window).compute()
    np.testing.assert_allclose(two.values, foot.sel(simulation=sim, lag=[-2, -1]).sum("lag"))

    ax = foot.stilt.plot(simulation=1, lag=slice(-3, -1), coastlines=False)
    assert ax.get_title() == f"{sim}, lag -3..-1 h"
    assert _receptor_marks(ax).tolist() == [[-99.5, 40.3]]
    with pytest.raises(ValueError, match="no footprint layer starts"):
        foot.stilt.to_map(time="2020-01-01")


def test_an_all_zero_footprint_is_an_empty_but_valid_plot(foot, tmp_path):
    zeros = foot.isel(simulation=[0]) * 0
    ax = zeros.stilt.plot(coastlines=False)
    assert not ax.collections  # no colour mesh (nothing positive for a log scale)
    assert len(ax.figure.axes) == 1  # and no colour bar
    assert [t.get_text() for t in ax.texts] == [
        "empty footprint: no surface influence on this grid"
    ]
    assert _receptor_marks(ax).tolist() == [[-100.0, 40.0]]
    assert ax.get_xlim() == pytest.approx((-103.0, -98.0))
    ax.figure.savefig(tmp_path / "empty.png")


def test_a_footprint_not_computed_is_an_error(foot):
    with pytest.raises(ValueError, match="not computed yet"):
        (foot * np.nan).stilt.plot(coastlines=False)
    with pytest.raises(ValueError, match="not a footprint"):
        foot.isel(lat=0).stilt.plot()


def test_map_of_a_calc_footprint_result(model):
    sim = model.simulations.ids()[0]
    receptor = stilt.PointReceptor(
        time="2024-07-15 06:00", longitude=-100.0, latitude=40.0, altitude=10
    )
    single = stilt.calc_footprint(
        model.trajectories.load(sim), receptor, model.config.footprints["default"]
    )
    assert single.dims[0] == "time"
    ax = single.stilt.plot(coastlines=False)
    np.testing.assert_allclose(
        _mesh(ax).get_array().compressed(),
        single.sum("time").values[single.sum("time").values > 0],
        rtol=1e-6,
    )
    assert _receptor_marks(ax).tolist() == [[-100.0, 40.0]]


def test_particle_tracks(model, tmp_path):
    particles = model.trajectories.load(model.simulations.ids()[0])
    ax = tracks(particles, coastlines=False)
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    n = particles["indx"].nunique()
    assert len(lines.get_segments()) == len(particles) - n  # consecutive steps per particle
    shade = lines.get_array()
    assert shade.min() >= particles["time"].min() / 60 and shade.max() <= 0
    marks = _receptor_marks(ax)
    np.testing.assert_allclose(marks, [[-100.0, 40.0]], atol=0.01)
    assert ax.figure.axes[-1].get_ylabel() == "time relative to receptor [h]"
    assert ax.get_xlabel() == "longitude [degrees_east]"
    ax.figure.savefig(tmp_path / "tracks.png")

    ax = tracks(particles, color="zagl", n_particles=10, receptor=(-100.0, 40.0))
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    ten = particles[particles["indx"] <= 10]
    assert len(lines.get_segments()) == len(ten) - 10
    assert lines.get_array().max() <= ten["zagl"].max()
    assert ax.figure.axes[-1].get_ylabel() == "height above ground [m]"
    assert _receptor_marks(ax).tolist() == [[-100.0, 40.0]]

    with pytest.raises(ValueError, match="lack column"):
        tracks(particles.drop(columns="lati"))
    with pytest.raises(ValueError, match="color must be"):
        tracks(particles, color="foot")


def test_coastlines_never_wait_for_a_download(foot, monkeypatch, tmp_path):
    monkeypatch.setattr(stilt.plot, "_coastlines_on_disk", lambda: False)
    ax = foot.stilt.plot(simulation=0)  # default: no coastlines without data on disk
    assert not hasattr(ax, "coastlines")
    ax.figure.savefig(tmp_path / "plain.png")  # offline: nothing to fetch at draw time


@pytest.mark.skipif(HAVE_CARTOPY, reason="checks the message shown without cartopy")
def test_coastlines_true_needs_cartopy(foot):
    with pytest.raises(ImportError, match="needs cartopy"):
        foot.stilt.plot(simulation=0, coastlines=True)


@pytest.mark.skipif(not HAVE_CARTOPY, reason="cartopy is not installed")
def test_coastlines_with_cartopy(foot, model, monkeypatch):
    from cartopy.feature import NaturalEarthFeature

    monkeypatch.setattr(stilt.plot, "_coastlines_on_disk", lambda: True)
    for ax in (
        foot.stilt.plot(simulation=0),
        tracks(model.trajectories.load(foot.simulation.values[0])),
    ):
        assert hasattr(ax, "coastlines")  # a GeoAxes, not drawn (may need a download)
        features = [c._feature for c in ax.artists + ax.collections if hasattr(c, "_feature")]
        assert [f.name for f in features if isinstance(f, NaturalEarthFeature)] == ["coastline"]
    _mesh(ax := foot.stilt.plot(simulation=0, coastlines=True))
    assert _receptor_marks(ax).tolist() == [[-100.0, 40.0]]
    with pytest.raises(ValueError, match="need a cartopy GeoAxes"):
        foot.stilt.plot(simulation=0, coastlines=True, ax=plt.subplots()[1])
