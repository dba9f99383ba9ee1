"""``DataArray.stilt`` beside PYSTILT's accessor of the same name, in either import order.

Each case runs in a fresh interpreter: which accessor holds the name depends on
what was imported first, and other tests of this session import both packages.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("stilt", reason="PYSTILT (the pystilt wheel) registers the other accessor")

pytestmark = pytest.mark.pystilt

# A PYSTILT footprint carries its receptor in its attributes, where PYSTILT's
# accessor reads it.
PREAMBLE = """
import json, warnings
warnings.simplefilter("always")
import numpy as np
import xarray as xr

def footprint():
    import stilt
    receptor = stilt.PointReceptor(
        time="2020-01-01 00:00", longitude=-111.8, latitude=40.7, altitude=5
    )
    return xr.DataArray(
        np.zeros((1, 2, 2)), dims=("time", "lat", "lon"),
        attrs={"stilt_receptor": receptor.to_json(), "stilt_name": "slv"},
    )

def seen(caught):
    return [f"{w.category.__name__}: {w.message}" for w in caught]
"""


def run(body: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PREAMBLE + body], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_ours_replaces_pystilts_once_with_a_warning_and_answers_with_its_methods():
    found = run(
        """
import stilt
with warnings.catch_warnings(record=True) as caught:
    import pystilt_dask
    from pystilt_dask.accessor import register
    register()  # again: said once
foot = footprint()
print(json.dumps({
    "warnings": seen(caught),
    "accessor": type(foot.stilt).__module__,
    "receptor": foot.stilt.receptor.id,
    "name": foot.stilt.name,
    "ours": callable(foot.stilt.convolve) and callable(foot.stilt.jacobian),
    "same": foot.stilt.receptor is foot.stilt.receptor,
}))
"""
    )
    (warning,) = found["warnings"]
    assert warning.startswith(
        "StiltAccessorWarning: pystilt_dask's DataArray.stilt accessor replaces "
        "stilt.footprint.accessor.FootprintAccessor: its config, geometry_hash, grid, "
        "name, receptor, to_netcdf still answer through foot.stilt; for its own "
        "aggregate, enhancement, plot use stilt.footprint.accessor.FootprintAccessor(foot)"
    )
    assert found["accessor"] == "pystilt_dask.accessor"
    assert found["receptor"] == "202001010000_-111.8_40.7_5"
    assert found["name"] == "slv"
    assert found["ours"] is True
    # PYSTILT's accessor is built once per array, so what it caches stays cached.
    assert found["same"] is True


def test_the_warning_can_be_filtered_by_its_message_before_import():
    found = run(
        """
import stilt
warnings.filterwarnings("ignore", message="pystilt_dask's DataArray.stilt")
with warnings.catch_warnings(record=True) as caught:
    import pystilt_dask
print(json.dumps({"warnings": seen(caught), "name": footprint().stilt.name}))
"""
    )
    assert found == {"warnings": [], "name": "slv"}


def test_without_pystilt_first_nothing_is_said_and_unknown_names_fail_as_usual():
    found = run(
        """
with warnings.catch_warnings(record=True) as caught:
    import pystilt_dask
try:
    xr.DataArray([1.0]).stilt.receptor
    error = None
except AttributeError as exc:
    error = str(exc)
print(json.dumps({"warnings": seen(caught), "error": error}))
"""
    )
    assert found == {
        "warnings": [],
        "error": "'FootprintAccessor' object has no attribute 'receptor'",
    }


def test_pystilt_imported_after_ours_takes_the_name_until_register():
    found = run(
        """
import pystilt_dask
from pystilt_dask.accessor import register
with warnings.catch_warnings(record=True) as caught:
    import stilt
foot = footprint()
after_pystilt = type(foot.stilt).__module__
with warnings.catch_warnings(record=True) as again:
    register()
print(json.dumps({
    "xarray": seen(caught),
    "after_pystilt": after_pystilt,
    "register": seen(again),
    "after_register": type(footprint().stilt).__module__,
    "receptor": footprint().stilt.receptor.id,
}))
"""
    )
    (warning,) = found["xarray"]
    assert warning.startswith("AccessorRegistrationWarning: registration of accessor")
    assert found["after_pystilt"] == "stilt.footprint.accessor"
    (taken_back,) = found["register"]
    assert taken_back.startswith("StiltAccessorWarning: ")
    assert found["after_register"] == "pystilt_dask.accessor"
    assert found["receptor"] == "202001010000_-111.8_40.7_5"
