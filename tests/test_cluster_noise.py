"""Clusters of ours start and close without distributed's warnings reaching the user.

Two of them were seen in a terminal: "Port 8787 is already in use" when a second
local cluster started on the machine (its dashboard moved to a free port, with
a warning no one can act on), and "Worker process still alive after 4.0
seconds, killing" when worker processes took longer to exit than their nannies
wait. Each case runs in a fresh interpreter, whose stderr is what a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, socket, sys, threading

import dask.config
from distributed import Client

from pystilt_dask.config import ExecutionConfig
from pystilt_dask.execution.clusters import make_cluster


def square(x):
    return x * x


def run(processes, links):
    execution = ExecutionConfig(backend="local", n_workers=1, cluster={"processes": processes})
    with make_cluster(execution) as cluster, Client(cluster) as client:
        links.append(cluster.dashboard_link)
        assert client.gather(client.map(square, range(4))) == [0, 1, 4, 9]


if __name__ == "__main__":
    # The dashboard port configured for our clusters is another program's.
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    links = []
    with dask.config.set({"stilt.local-cluster.dashboard-port": port}):
        run(False, links)
        run(False, links)  # back to back
        both = [threading.Thread(target=run, args=(True, links)) for _ in range(2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()
    print(json.dumps({"port": port, "links": links}))
"""


def test_local_clusters_start_and_close_quietly_beside_one_another(tmp_path):
    script = tmp_path / "clusters.py"  # worker processes re-import the main module
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert len(found["links"]) == 4
    assert all(f":{found['port']}/" not in link for link in found["links"])
    for noise in ("already in use", "still alive", "Traceback", "Warning"):
        assert noise not in done.stderr
