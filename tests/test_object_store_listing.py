"""Listing a folder of S3 (a moto server on loopback) in concurrent key ranges.

``Location.list_names(folder, expected)`` must return exactly the names a plain
listing returns, whatever the expected names say: names nobody expected, expected
names that are absent, names before the first and after the last cut, names that
start with a digit or with anything else, a range holding more than one page.
"""

from __future__ import annotations

import uuid

import pytest

from pystilt_dask.store import layout, listing
from pystilt_dask.store.paths import Location

boto3 = pytest.importorskip("boto3")
moto_core = pytest.importorskip("moto.core")
DEFAULT_ACCOUNT_ID = moto_core.DEFAULT_ACCOUNT_ID
s3_backends = pytest.importorskip("moto.s3.models").s3_backends


def sim_ids(n: int) -> list[str]:
    """Simulation ids shaped like the real ones: a time, then the place."""
    return [f"2023{7 + i // 2000:02d}{i % 2000:06d}_-111.{i % 97}_40.77_{i % 7}" for i in range(n)]


#: Names that sort before, between and after the simulation ids and the chunk keys.
ODD_NAMES = ["-lead", ".dot", "0", "1999", "9~", "A", "_under", "c.", "zarr.json", "~tilde"]


@pytest.fixture
def folder(s3_options) -> tuple[Location, str, object]:
    """A fresh project on the moto server, its folder key and an S3 client."""
    location = Location(f"s3://stilt-test/{uuid.uuid4().hex[:8]}", s3_options)
    client = boto3.client(
        "s3", aws_access_key_id=s3_options["key"], aws_secret_access_key=s3_options["secret"],
        **s3_options["client_kwargs"],
    )  # fmt: skip
    return location, "names", client


def put(location: Location, keys: list[str]) -> None:
    """Write empty objects under the project straight into the moto server's bucket.

    The server runs in this process (``s3_options``); thousands of PUT requests
    would take a minute, and only the listing is under test.
    """
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key in keys:
        backend.put_object("stilt-test", location._fs.split_path(location._path(key))[1], b"")


def boto_names(client, location: Location, folder: str) -> list[str]:
    """The folder's file names, as boto3's own paginator lists them."""
    _, key, _ = location._fs.split_path(location._path(folder))
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket="stilt-test", Prefix=f"{key}/", Delimiter="/"
    )
    return [c["Key"].rsplit("/", 1)[1] for p in pages for c in p.get("Contents", [])]


def list_requests(location: Location) -> list[dict]:
    """Record the parameters of every ListObjectsV2 request of the location's client."""
    seen: list[dict] = []
    location._fs.s3.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: seen.append(dict(params))
    )
    return seen


def test_cut_points_every_range_holds_fewer_names_than_a_page():
    names = [f"{i:05d}" for i in range(3 * listing.NAMES_PER_RANGE + 5)]
    cuts = listing.cut_points(reversed(names))
    assert cuts == [names[listing.NAMES_PER_RANGE * k - 1] for k in (1, 2, 3)]
    assert listing.cut_points(names[: listing.NAMES_PER_RANGE]) == []
    assert listing.cut_points([]) == []


def test_ranges_list_what_a_plain_listing_lists(folder):
    location, name, client = folder
    ids = sim_ids(2600)
    present = [f"{i}.parquet" for i in ids[::2]] + [f"{i}.parquet" for i in ids[1::2][:300]]
    chunks = [f"c.{row}.0.0.0" for row in range(0, 1200, 3)]
    stray = ["x.parquet.1a2b.partial", f"{ids[5]}.parquet.partial"]
    put(location, [f"{name}/{n}" for n in present + chunks + stray + ODD_NAMES])
    put(location, [f"{name}/sub/{ids[0]}.parquet", f"{name}/c/0/0/0/0", "other/0.parquet"])
    expected = [f"{i}.parquet" for i in ids] + [f"c.{row}.0.0.0" for row in range(1200)]
    requests = list_requests(location)

    got = location.list_names(name, expected=expected)

    plain = location.list_names(name)
    assert got == sorted(plain) == sorted(boto_names(client, location, name))
    assert len(got) == len(present) + len(chunks) + len(stray) + len(ODD_NAMES)
    # The ranges after the first page; ranges within one id prefix ask under it.
    ranges = {r["StartAfter"]: r["Prefix"].rsplit("/", 1)[1] for r in requests if "StartAfter" in r}
    assert len(ranges) >= 3 and "" in ranges.values() and "202307001" in ranges.values()


def test_a_range_of_many_pages_goes_on_with_tokens(folder):
    location, name, client = folder
    names = [f"{i:05d}.parquet" for i in range(3500)]
    put(location, [f"{name}/{n}" for n in names])
    requests = list_requests(location)
    # One expected name in three: the ranges between cuts hold ~2,900 names each.
    got = location.list_names(name, expected=names[::3])
    assert got == names == sorted(location.list_names(name))
    assert any("ContinuationToken" in r for r in requests)


def test_absent_and_small_folders(folder):
    location, name, _ = folder
    ids = [f"{i}.parquet" for i in sim_ids(5000)]
    assert location.list_names(name, expected=ids) == []
    put(location, [f"{name}/{ids[7]}", f"{name}/{layout.CLOCK}"])
    assert location.list_names(name, expected=ids) == [ids[7]]
    assert location.list_names(name, expected=[]) == [ids[7]]


def test_local_and_memory_folders_take_expected_names(tmp_path):
    for location in (Location(tmp_path / "p"), Location(f"memory://{uuid.uuid4().hex}")):
        location.write_bytes("f/0001", b"")
        location.write_bytes("f/0002", b"")
        expected = [f"{i:04d}" for i in range(3000)]
        assert sorted(location.list_names("f", expected=expected)) == ["0001", "0002"]
