"""Met over HTTP with and without a shared crop: bytes fetched per simulation, peak memory.

A synthetic region: idealized met on a 0.05° grid of 20° × 20° (401 × 401 cells,
two 6-hourly files of about 97 MB each), served by a local HTTP server that counts
the bytes it sends. N receptors (default 100) spread over 1° around the centre,
released between 06:00 and 11:00, 6 hours back, 50 particles each. Two ways:

- **whole**: the simulations read the met URL; each node fetches the whole files
  its runs read into its met cache;
- **crop**: one crop task fetches them, cuts the receptors' box widened by 250 km,
  and writes it where the server serves it; the simulations read the crop's URL.

Each side runs in its own process with a cold met cache (one node). Reported:
bytes the server sent (the crop task's apart), bytes a simulation reads on a
cold node (the met files it is given), and peak resident memory of the Python
process and of ``hycs_std`` (the largest child). Wall times are shown for
orientation only.

Run: ``python benchmarks/bench_met.py [--receptors 100] [--workdir DIR]``.

Measured here (2 cores, shared; 100 receptors)::

    100 receptors, 6 h back, 50 particles; met 195 MiB (401x401), crop 18.8 MiB
                                   whole files   shared crop
    sent by the server, MiB              195.2         214.2
      of which the crop task               0.0         195.2
    per simulation, MiB                    2.0           2.1
    read by a sim (cold node)            195.1          18.8
    peak RSS hycs_std, MiB                95.9          95.9
    peak RSS python, MiB                 321.5         321.6
      crop task python, MiB                0.0         262.5
    wall, s                              160.5         200.2

One node shares whole files through its met cache, so the crop saves bytes only
where simulations run on several nodes with their own disks: N × 195 MiB against
195 + N × 18.8 MiB. ``hycs_std``'s memory does not depend on the grid's size.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CENTER = (-100.0, 40.0)
REACH_KM = 250.0
N_HOURS = -6


class _Counting(SimpleHTTPRequestHandler):
    """Static files with range requests; counts the bytes sent."""

    sent = [0]

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted is None or os.path.isdir(path):
            if self.command == "GET" and os.path.isfile(path):
                self.sent[0] += os.path.getsize(path)
            return super().send_head()
        size = os.path.getsize(path)
        first, last = int(wanted[1]), min(int(wanted[2] or size - 1), size - 1)
        with open(path, "rb") as stream:
            stream.seek(first)
            data = stream.read(last - first + 1)
        self.sent[0] += len(data)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


def _receptors(n: int):
    import numpy as np
    import pandas as pd

    from pystilt_dask.receptors import PointReceptor

    rng = np.random.default_rng(0)
    hours = pd.Timestamp("2024-07-01 06:00") + pd.to_timedelta(rng.integers(0, 6, n), "h")
    lons = CENTER[0] + rng.uniform(-0.5, 0.5, n)
    lats = CENTER[1] + rng.uniform(-0.5, 0.5, n)
    return [
        PointReceptor(time=t, longitude=round(x, 4), latitude=round(y, 4), altitude=5)
        for t, x, y in zip(hours, lons, lats, strict=True)
    ]


def _config(url: str, executable: str | None = None):
    from pystilt_dask.config import ModelConfig

    hysplit = {"n_hours": N_HOURS, "numpar": 50, "seed": 1}
    if executable:
        hysplit["executable"] = executable
    return ModelConfig.from_dict(
        {"mets": {"region": {"directory": url, "file_format": "%Y%m%d_%H"}}, "hysplit": hysplit}
    )


def _measured_hysplit(folder: Path) -> Path:
    """A hycs_std that runs the real one under GNU time, appending its peak RSS (kB) to $RSS_LOG.

    The peak of the Python process's children would count the forked copy of the
    worker itself; ``time`` reports hycs_std's own.
    """
    from pystilt_dask.hysplit.executable import resolve_hysplit

    real = resolve_hysplit().executable
    wrapper = folder / "hycs_std"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/time -a -o "$RSS_LOG" -f %M "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _child(args: argparse.Namespace) -> None:
    """One side in this process: crop (``--crop-to``) or simulations; prints JSON."""
    from pystilt_dask.config import MetConfig
    from pystilt_dask.meteorology.crop import crop_batch
    from pystilt_dask.trajectory import simulate_trajectories

    receptors = _receptors(args.receptors)
    config = _config(args.url, args.executable)
    start = time.perf_counter()
    result: dict = {}
    if args.crop_to:
        batch = [(r.time, r.release_points) for r in receptors]
        ((_, cropped),) = crop_batch(batch, config, "region", REACH_KM, args.crop_to)
        result["crop"] = cropped.directory
    else:
        met = MetConfig(directory=args.url, file_format="%Y%m%d_%H")
        read = [
            sum(p.stat().st_size for p in simulate_trajectories(r, config, met=met).met_files)
            for r in receptors
        ]
        result["bytes_read_per_sim"] = sum(read) / len(read)
    result["seconds"] = time.perf_counter() - start
    result["python_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log = Path(os.environ["RSS_LOG"])
    peaks = [int(line) for line in log.read_text().split()] if log.exists() else [0]
    result["hysplit_peak_mib"] = max(peaks) / 1024
    print(json.dumps(result))


def _side(
    url: str, receptors: int, cache: Path, sent: list[int], hysplit: Path, crop_to: str = ""
) -> dict:
    env = {
        **os.environ,
        "DASK_STILT__MET_CACHE__DIRECTORY": str(cache),
        "RSS_LOG": str(cache.with_suffix(".rss")),
    }
    before = sent[0]
    command = [sys.executable, __file__, "--child", "--url", url, "--receptors", str(receptors),
               "--executable", str(hysplit)]  # fmt: skip
    if crop_to:
        command += ["--crop-to", crop_to]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["bytes_sent"] = sent[0] - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receptors", type=int, default=100)
    parser.add_argument("--workdir", help="keep the met here between runs (default: a temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--crop-to", default="", help=argparse.SUPPRESS)
    parser.add_argument("--executable", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    from pystilt_dask.meteorology.idealized import write_idealized_met

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-met-"))
    met = root / "served" / "met"
    if not met.is_dir():
        write_idealized_met(
            met, datetime(2024, 7, 1), 12, center=CENTER, half_width_deg=10.0,
            resolution_deg=0.05, u=5.0, v=2.0, shear_per_km=0.3,
        )  # fmt: skip
    served = root / "served"
    handler = functools.partial(_Counting, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    sent = _Counting.sent
    hysplit = _measured_hysplit(root)
    try:
        stamp = time.strftime("%H%M%S")
        whole = _side(f"{base}/met", args.receptors, root / f"cache-whole-{stamp}", sent, hysplit)
        crop_task = _side(f"{base}/met", args.receptors, root / f"cache-crop-{stamp}", sent,
                          hysplit, crop_to=str(served / "crops"))  # fmt: skip
        crop_url = f"{base}/{Path(crop_task['crop']).relative_to(served).as_posix()}"
        cropped = _side(crop_url, args.receptors, root / f"cache-sims-{stamp}", sent, hysplit)
    finally:
        server.shutdown()
    n = args.receptors
    mib = 2**20
    met_mib = sum(p.stat().st_size for p in met.iterdir()) / mib
    crop_mib = sum(p.stat().st_size for p in Path(crop_task["crop"]).iterdir()) / mib
    print(f"{n} receptors, 6 h back, 50 particles; met {met_mib:.0f} MiB (401x401), "
          f"crop {crop_mib:.1f} MiB")  # fmt: skip
    print(f"{'':28}{'whole files':>14}{'shared crop':>14}")
    rows = [
        ("sent by the server, MiB", whole["bytes_sent"] / mib,
         (crop_task["bytes_sent"] + cropped["bytes_sent"]) / mib),
        ("  of which the crop task", 0.0, crop_task["bytes_sent"] / mib),
        ("per simulation, MiB", whole["bytes_sent"] / mib / n,
         (crop_task["bytes_sent"] + cropped["bytes_sent"]) / mib / n),
        ("read by a sim (cold node)", whole["bytes_read_per_sim"] / mib,
         cropped["bytes_read_per_sim"] / mib),
        ("peak RSS hycs_std, MiB", whole["hysplit_peak_mib"], cropped["hysplit_peak_mib"]),
        ("peak RSS python, MiB", whole["python_peak_mib"], cropped["python_peak_mib"]),
        ("  crop task python, MiB", 0.0, crop_task["python_peak_mib"]),
        ("wall, s", whole["seconds"], crop_task["seconds"] + cropped["seconds"]),
    ]  # fmt: skip
    for label, a, b in rows:
        print(f"{label:28}{a:14.1f}{b:14.1f}")


if __name__ == "__main__":
    main()
