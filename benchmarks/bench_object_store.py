"""``status`` of 10⁴ and 10⁵ simulations on S3 (a moto server on loopback): LIST requests and time.

Both sides run in one process against one store:

* **plain**: every folder listed page after page (``Location.list_names`` without
  expected names: s3fs's ``ls``), as ``status`` listed before key ranges existed;
* **ranges**: ``status`` as it is, whose listings of the large folders pass the
  registry's names as ``expected`` (:mod:`pystilt_dask.store.listing`).

The store is a registered project of N simulations, all complete: a particle key
and a footprint chunk key per simulation, named by :mod:`pystilt_dask.store.layout`,
each an empty object put straight into the moto server's bucket (the listing is
what is measured; N PUT requests would take longer than everything else). The
moto server runs in a child process, so the server and the client each have a
core. LIST requests are counted by a botocore event hook on s3fs's client.

Run as a script (about 10 minutes for 10⁵ on 2 cores)::

    python benchmarks/bench_object_store.py 10000 100000

or through pytest-benchmark (10⁴ only)::

    pytest benchmarks/bench_object_store.py --benchmark-only
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest

from pystilt_dask.config import ModelConfig
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store import layout, registry
from pystilt_dask.store.paths import Location
from pystilt_dask.store.status import status

BUCKET = "stilt-bench"
GRID = {"xmin": -112, "xmax": -111, "ymin": 40, "ymax": 41, "xres": 0.1}


def _serve(conn) -> None:
    """The moto server, in a child process: reports its port, then puts the keys it is sent."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    conn.send(server._server.server_port)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    while (keys := conn.recv()) is not None:
        for key in keys:
            backend.put_object(BUCKET, key, b"")
        conn.send(len(keys))
    server.stop()


@contextmanager
def moto_s3() -> Iterator[tuple[dict, object]]:
    """Storage options of a moto server in a child process with bucket ``stilt-bench``,
    and the pipe that puts keys into it."""
    import boto3

    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,))
    process.start()
    try:
        endpoint = f"http://127.0.0.1:{parent.recv()}"
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        options = {
            "key": "bench",
            "secret": "bench",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        yield options, parent
    finally:
        parent.send(None)
        process.join(30)
        if process.is_alive():
            process.kill()


class PlainListing(Location):
    """A location that lists every folder page after page, whatever names are expected."""

    def list_names(self, prefix: str, expected: Iterable[str] | None = None) -> list[str]:
        return super().list_names(prefix)


def complete_project(options: dict, pipe, n: int) -> str:
    """A project of ``n`` registered simulations on the moto server, all complete."""
    root = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"
    t0 = datetime(2023, 7, 15, 18)
    receptors = [
        PointReceptor(
            time=t0 + timedelta(hours=i), longitude=-111.85 + 0.001 * (i % 97),
            latitude=40.77, altitude=5 + i // 97,
        )
        for i in range(n)
    ]  # fmt: skip
    config = ModelConfig.from_dict(
        {
            "mets": {"met": {"directory": tempfile.gettempdir(), "file_format": "%Y%m%d"}},
            "hysplit": {"n_hours": -24},
            "footprints": {
                "slv": {"xmin": -112, "xmax": -111, "ymin": 40, "ymax": 41, "xres": 0.1}
            },
            "storage_options": options,
        }
    )
    model = Model(root, receptors, config)
    model.register_pending()
    held = model.registry()
    keys = [layout.particles_key(s) for s in held.sim_ids]
    keys += [layout.chunk_key("slv", int(row)) for row in held.rows]
    base = root.removeprefix(f"s3://{BUCKET}/")
    pipe.send([f"{base}/{key}" for key in keys])
    assert pipe.recv() == len(keys)
    return root


def timed_status(location: Location, rule, lists: list[int]) -> dict:
    """One ``status`` (registry read included, as ``Model.status``): seconds and LIST requests.

    ``client_cpu_seconds`` is this process's CPU time (the moto server's is not in it):
    botocore parses every key of every page.
    """
    before = len(lists)
    start, cpu = time.perf_counter(), time.process_time()
    table = status(location, registry.read(location), rule).table
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert (table["state"] == "complete").all()
    return {"seconds": seconds, "client_cpu_seconds": cpu, "list_requests": len(lists) - before}


def count_lists(location: Location) -> list[int]:
    """A list that grows by one per ListObjectsV2 request of the location's s3fs client."""
    seen: list[int] = []
    location._fs.connect()  # s3fs makes its client on first use
    location._fs.s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: seen.append(1))
    return seen


def measure(n: int, options: dict, pipe) -> dict:
    """Both sides of ``status`` on one project of ``n`` complete simulations."""
    root = complete_project(options, pipe, n)
    ranges, plain = Location(root, options), PlainListing(root, options)
    rule = Model(root, storage_options=options).completion
    lists = count_lists(ranges)
    return {
        "n": n,
        "plain": timed_status(plain, rule, lists),
        "ranges": timed_status(ranges, rule, lists),
        "load_average": os.getloadavg()[0],
    }


def report(result: dict) -> str:
    """One line: both sides and their ratio."""
    p, r = result["plain"], result["ranges"]

    def side(name: str, m: dict) -> str:
        return (
            f"{name} {m['seconds']:.2f} s (client CPU {m['client_cpu_seconds']:.2f} s), "
            f"{m['list_requests']} LIST"
        )

    return (
        f"N={result['n']}: {side('plain', p)}; {side('ranges', r)}; "
        f"time ratio {p['seconds'] / r['seconds']:.2f}x (load average {result['load_average']:.1f})"
    )


def test_status_on_moto(benchmark):
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with moto_s3() as (options, pipe):
        # One round: the time pytest-benchmark shows includes making the store; the
        # two sides are in extra_info and printed.
        result = benchmark.pedantic(measure, args=(10_000, options, pipe), rounds=1, iterations=1)
        benchmark.extra_info.update(result)
        print(report(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="+", help="numbers of simulations")
    args = parser.parse_args()
    with moto_s3() as (options, pipe):
        for n in args.n:
            print(report(measure(n, options, pipe)), flush=True)


if __name__ == "__main__":
    main()
