"""The Kubernetes backend, offline: no Kubernetes API server can run here.

1. The DaskCluster resource :func:`kubernetes_spec` builds validates against the
   Dask operator's own CRD schema (shipped in the dask-kubernetes wheel) and its
   scheduler and worker pods against the upstream Pod schema (kubernetes-validate,
   strict), with negative controls showing both checks can fail.
2. The unmodified ``KubeCluster``, started by :func:`make_cluster`, runs real
   simulations against the fake API server and mini operator in
   ``../shared/tools/k8s``: they start a real Dask scheduler and workers in this
   process, configured from the pod spec KubeCluster submitted. The scheduler
   is reached through a ``LoadBalancer`` service, or through the default
   ``ClusterIP`` service by the port-forward the harness serves; a
   ``DaskAutoscaler`` (``adapt``) is driven by the harness's autoscaler loop;
   stores are a local directory, ``memory://`` and S3 (a moto server on loopback).

See docs/kubernetes.md for what this does not cover.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import dask.config
import pytest
import yaml
from distributed import Client

from pystilt_dask.config import ExecutionConfig, ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.execution import make_cluster
from pystilt_dask.execution.kubernetes import (
    TASK_DURATIONS_ENV,
    kubernetes_spec,
    port_forward_cluster_ip,
)
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor
from pystilt_dask.store.status import State

pytestmark = pytest.mark.kubernetes

HARNESS = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "k8s"
if not HARNESS.is_dir():
    pytest.skip(f"needs the offline Kubernetes harness at {HARNESS}", allow_module_level=True)
MISSING = "needs {}: pip install 'pystilt-dask[test]'"
pytest.importorskip("dask_kubernetes", reason=MISSING.format("dask-kubernetes"))
pytest.importorskip("aiohttp", reason=MISSING.format("aiohttp"))  # the fake API server
jsonschema = pytest.importorskip("jsonschema", reason=MISSING.format("jsonschema"))
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason=MISSING.format("kubernetes-validate")
)

# The harness is read-only shared code, imported in place rather than copied.
sys.path.insert(0, str(HARNESS))
fake_k8s_operator = pytest.importorskip("fake_k8s_operator")
k8s_spec_validate = pytest.importorskip("k8s_spec_validate")

IMAGE = "ghcr.io/example/pystilt-dask:0.1"
CLUSTER = {
    "image": IMAGE,
    "resources": {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    },
    "env": {"OMP_NUM_THREADS": "1", "AWS_REGION": "us-west-2"},
}
# What a user writes in config.yaml: YAML reads the bare numbers as int.
CLUSTER_FROM_YAML = yaml.safe_load(
    """
    image: ghcr.io/example/pystilt-dask:0.1
    resources: {requests: {cpu: 1, memory: 2Gi}, limits: {cpu: 1, memory: 2Gi}}
    env: {OMP_NUM_THREADS: 1, EMPTY:}
    """
)
# Credentials from a Kubernetes Secret: env as a list of EnvVar objects.
CLUSTER_WITH_SECRET = {
    "image": IMAGE,
    "env": [
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "stilt-s3", "key": "secret"}},
        }
    ],
}
WORKER_ARGS = ["--nthreads", "1", "--resources", "hysplit=1"]
GRID = {"xmin": -112.5, "xmax": -111.2, "ymin": 40.3, "ymax": 41.2, "xres": 0.01}
# What the workers and the scheduler of a built cluster get (stilt.cluster-config).
TUNINGS = {
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "100ms",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "1s",
    "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL": "100ms",
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "500ms",
}


@pytest.fixture(scope="module")
def crd_validator() -> jsonschema.Draft4Validator:
    """Validator of the operator's DaskCluster openAPIV3Schema.

    Kubernetes structural schemas are OpenAPI v3 (close to draft 4); jsonschema
    ignores the ``x-kubernetes-*`` keywords, which does not matter for types and
    required fields.
    """
    _, schema = k8s_spec_validate.crd_schema()
    return jsonschema.Draft4Validator(schema)


def crd_errors(validator: jsonschema.Draft4Validator, spec: dict) -> list[str]:
    """Every CRD schema violation of ``spec``, as ``path: message``."""
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(spec)
    ]


def validate_pod(pod_spec: dict) -> None:
    """Validate a pod spec against the newest bundled upstream Pod schema.

    Strict mode rejects unknown fields, which the CRD schema does not: there the
    pod spec has no ``additionalProperties: false`` and the API server would
    silently prune a misspelt field.
    """
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stilt"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(
    "execution",
    [
        ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER),
        ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER_FROM_YAML),
        ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER_WITH_SECRET),
        ExecutionConfig(
            backend="kubernetes",
            cluster={"scheduler_service_type": "LoadBalancer", "name": "r7", "image": IMAGE},
        ),
        ExecutionConfig(backend="kubernetes", cluster={"image": IMAGE}),
    ],
    ids=["options", "yaml-numbers", "secret-env", "service-and-name", "defaults"],
)
def test_spec_validates_against_crd_and_pod_schemas(execution, crd_validator):
    spec = kubernetes_spec(execution)
    # Validated as built, without pruning nulls first: kubernetes_spec must do that.
    assert crd_errors(crd_validator, spec) == []
    validate_pod(spec["spec"]["scheduler"]["spec"])
    validate_pod(spec["spec"]["worker"]["spec"])
    (worker,) = spec["spec"]["worker"]["spec"]["containers"]
    start = worker["args"].index("--nthreads")
    assert worker["args"][start : start + 4] == WORKER_ARGS


def test_spec_carries_the_cluster_options():
    spec = kubernetes_spec(ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER))
    assert spec["kind"] == "DaskCluster"
    assert spec["spec"]["worker"]["replicas"] == 3
    assert spec["spec"]["scheduler"]["service"]["type"] == "ClusterIP"
    containers = [spec["spec"][part]["spec"]["containers"][0] for part in ("scheduler", "worker")]
    for container in containers:
        assert container["image"] == IMAGE
        assert container["resources"] == CLUSTER["resources"]
        env = {e["name"]: e["value"] for e in container["env"]}
        env.pop(TASK_DURATIONS_ENV, None)  # scheduler only
        assert env == {**CLUSTER["env"], **TUNINGS}
    # make_cluster_spec hands both pods one resources dict; editing one must not edit both.
    assert containers[0]["resources"] is not containers[1]["resources"]

    named = kubernetes_spec(
        ExecutionConfig(
            backend="kubernetes",
            cluster={"scheduler_service_type": "LoadBalancer", "name": "r7", "image": IMAGE},
        )
    )
    assert named["metadata"]["name"] == "r7"
    assert named["spec"]["scheduler"]["service"]["type"] == "LoadBalancer"
    assert named["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == "r7"
    assert named["spec"]["worker"]["replicas"] == 1

    yaml_spec = kubernetes_spec(
        ExecutionConfig(backend="kubernetes", cluster={**CLUSTER_FROM_YAML, "image": IMAGE})
    )
    (worker,) = yaml_spec["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert worker["env"][:2] == [
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "EMPTY", "value": ""},
    ]


def test_met_volume_from_the_guide_validates(crd_validator):
    # docs/kubernetes.md mounts the met this way: `cluster` has no volumes option.
    spec = kubernetes_spec(ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER))
    worker = spec["spec"]["worker"]["spec"]
    worker["volumes"] = [
        {"name": "met", "persistentVolumeClaim": {"claimName": "hrrr-met", "readOnly": True}}
    ]
    worker["containers"][0]["volumeMounts"] = [
        {"name": "met", "mountPath": "/met", "readOnly": True}
    ]
    assert crd_errors(crd_validator, spec) == []
    validate_pod(worker)


def test_missing_image_and_bad_service_type_are_config_errors():
    with pytest.raises(ConfigError, match="image is required"):
        kubernetes_spec(ExecutionConfig(backend="kubernetes"))
    bad = {"image": IMAGE, "scheduler_service_type": "LoadBalancr"}
    with pytest.raises(ConfigError, match="'LoadBalancr' is not one of"):
        kubernetes_spec(ExecutionConfig(backend="kubernetes", cluster=bad))


def test_scheduler_gets_the_task_duration_hint():
    spec = kubernetes_spec(ExecutionConfig(backend="kubernetes", cluster={"image": IMAGE}))
    (scheduler,) = spec["spec"]["scheduler"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in scheduler["env"]}
    assert json.loads(env[TASK_DURATIONS_ENV]) == {"stilt-sim": "1m"}


def test_pods_get_the_cluster_config_and_the_user_env_wins():
    # The tunings reach the pods as DASK_* variables, since the pods' Dask reads
    # them at import; a variable the user sets is not set twice.
    user = {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "20ms", TASK_DURATIONS_ENV: "{}"}
    spec = kubernetes_spec(
        ExecutionConfig(backend="kubernetes", cluster={"image": IMAGE, "env": user})
    )
    for part in ("scheduler", "worker"):
        (container,) = spec["spec"][part]["spec"]["containers"]
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names))
        assert {e["name"]: e["value"] for e in container["env"]} == {**TUNINGS, **user}
    with dask.config.set({"stilt.cluster-config": None}):
        spec = kubernetes_spec(ExecutionConfig(backend="kubernetes", cluster={"image": IMAGE}))
    assert "env" not in spec["spec"]["worker"]["spec"]["containers"][0]


def test_adaptive_spec_starts_with_the_minimum():
    execution = ExecutionConfig(
        backend="kubernetes", adapt={"minimum": 0, "maximum": 2}, cluster={"image": IMAGE}
    )
    assert kubernetes_spec(execution)["spec"]["worker"]["replicas"] == 0


def test_port_forward_outside_a_pod_only(monkeypatch):
    # KubeCluster would first try the service's DNS name, ~20 s per port, in case
    # it runs inside the cluster: pystilt_dask knows where it runs.
    execution = ExecutionConfig(backend="kubernetes", cluster={"image": IMAGE})
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert port_forward_cluster_ip(execution) is True
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert port_forward_cluster_ip(execution) is False
    with dask.config.set({"kubernetes.port-forward-cluster-ip": True}):
        assert port_forward_cluster_ip(execution) is True
    chosen = ExecutionConfig(
        backend="kubernetes", cluster={"image": IMAGE, "port_forward_cluster_ip": False}
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert port_forward_cluster_ip(chosen) is False
    spec = kubernetes_spec(chosen)  # a client-side option: not in the resource
    assert "port_forward_cluster_ip" not in json.dumps(spec)


def test_unknown_cluster_option_is_a_config_error():
    execution = ExecutionConfig(backend="kubernetes", cluster={"imgae": IMAGE})
    with pytest.raises(ConfigError, match="imgae"):
        kubernetes_spec(execution)


def test_schemas_reject_corrupted_specs(crd_validator):
    spec = kubernetes_spec(ExecutionConfig(backend="kubernetes", n_workers=3, cluster=CLUSTER))

    bad = copy.deepcopy(spec)
    bad["spec"]["worker"]["replicas"] = "four"
    assert crd_errors(crd_validator, bad) == [
        "spec.worker.replicas: 'four' is not of type 'integer'"
    ]

    bad = copy.deepcopy(spec)
    del bad["spec"]["scheduler"]["service"]
    assert crd_errors(crd_validator, bad) == ["spec.scheduler: 'service' is a required property"]

    bad = copy.deepcopy(spec)
    bad["spec"]["worker"]["spec"]["containers"][0]["resurces"] = {}
    assert crd_errors(crd_validator, bad) == []  # the CRD schema lets unknown fields through
    with pytest.raises(kubernetes_validate.ValidationError, match="resurces"):
        validate_pod(bad["spec"]["worker"]["spec"])


@pytest.fixture
def fake_k8s(monkeypatch):
    """The fake API server and mini operator on their own event loop, as KUBECONFIG."""
    loop, box = fake_k8s_operator.start_in_thread()
    assert "kubeconfig" in box, "the fake Kubernetes API server did not start within 10 s"
    monkeypatch.setenv("KUBECONFIG", box["kubeconfig"])
    fake = box["fake"]
    yield fake

    def on_fake_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    # A test that failed before KubeCluster.close() leaves a scheduler and workers up.
    for name in list(fake.clusters):
        on_fake_loop(fake.teardown("default", name))
    on_fake_loop(box["runner"].cleanup())
    loop.call_soon_threadsafe(loop.stop)
    os.unlink(box["kubeconfig"])


def _task_prefixes(dask_scheduler) -> list[str]:
    return sorted(dask_scheduler.task_prefixes)


# The harness registers plain functions as aiohttp routes, which aiohttp deprecates.
@pytest.mark.filterwarnings("ignore:Bare functions are deprecated:DeprecationWarning")
# A worker missing its hysplit resource would leave tasks queued forever: fail instead.
@pytest.mark.timeout(120)
def test_kubecluster_runs_simulations(fake_k8s, hrrr_met, tmp_path):
    config = ModelConfig.from_dict(
        {
            "mets": {"hrrr": hrrr_met},
            "hysplit": {"n_hours": -1, "numpar": 20, "seed": 7},
            "footprints": {"default": GRID},
        }
    )
    receptors = [
        PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5),
        PointReceptor(time="2019-05-30 11:00", longitude=-111.9, latitude=40.7, altitude=10),
        PointReceptor(time="2019-05-30 09:00", longitude=-111.7, latitude=40.6, altitude=5),
    ]
    model = Model(tmp_path / "proj", receptors=receptors, config=config)
    sim_ids = model.register_pending()
    # LoadBalancer here; the default, ClusterIP, is tested below.
    execution = ExecutionConfig(
        backend="kubernetes",
        n_workers=2,
        cluster={"scheduler_service_type": "LoadBalancer", "image": IMAGE},
    )

    cluster = make_cluster(execution)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=30)
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            # The operator started these from the worker pod args KubeCluster submitted.
            assert [(w["nthreads"], w["resources"]) for w in workers] == [(1, {"hysplit": 1})] * 2

            outcomes = list(model.plan().outcomes(client))
            assert sorted(o.sim_id for o in outcomes) == sorted(sim_ids)
            assert {(o.state, o.error) for o in outcomes} == {(State.COMPLETE.value, None)}
            assert "stilt-sim" in client.run_on_scheduler(_task_prefixes)
    finally:
        cluster.close()

    assert model.status().ids(State.COMPLETE) == sim_ids
    assert float(model.footprints["default"].load().sum()) > 0
    assert [key for key in fake_k8s.store if key[3] == "daskclusters"] == []
    assert fake_k8s.clusters == {}


RECEPTORS = [
    PointReceptor(time="2019-05-30 10:00", longitude=-111.848, latitude=40.766, altitude=5),
    PointReceptor(time="2019-05-30 11:00", longitude=-111.9, latitude=40.7, altitude=10),
    PointReceptor(time="2019-05-30 09:00", longitude=-111.7, latitude=40.6, altitude=5),
    PointReceptor(time="2019-05-30 10:00", longitude=-111.8, latitude=40.65, altitude=20),
]


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> tuple[str, dict]:
    """A fresh project root of each kind and its storage options.

    ``memory://`` works here because the harness's workers share this process.
    """
    name = uuid.uuid4().hex[:8]
    if request.param == "local":
        return str(tmp_path / name), {}
    if request.param == "memory":
        return f"memory://k8s/{name}", {}
    return f"s3://stilt-test/{name}", request.getfixturevalue("s3_options")


def _project(hrrr_met, root: str, options: dict, receptors=RECEPTORS[:3], **profile) -> Model:
    """A project of real HYSPLIT simulations on the shared HRRR met, with a `k8s` profile."""
    config = ModelConfig.from_dict(
        {
            "mets": {"hrrr": hrrr_met},
            "hysplit": {"n_hours": -1, "numpar": 20, "seed": 7},
            "footprints": {"default": GRID},
            "output": root,
            "storage_options": options,
            "profiles": {"k8s": {"backend": "kubernetes", "cluster": {"image": IMAGE}, **profile}},
        }
    )
    return Model(root, receptors=receptors, config=config)


def _fake_workers(fake) -> int:
    """Workers the mini operator runs now, over every cluster and worker group."""
    return sum(len(group) for c in list(fake.clusters.values()) for group in c["workers"].values())


@pytest.mark.filterwarnings("ignore:Bare functions are deprecated:DeprecationWarning")
@pytest.mark.timeout(180)
def test_default_clusterip_service_runs_a_profile(fake_k8s, hrrr_met, store, monkeypatch):
    # What a user runs: Model.run with a profile that sets only the image, so the
    # scheduler service is the default ClusterIP and KubeCluster, outside the
    # cluster, reaches it by port-forward. Stores: local, memory:// and S3.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    root, options = store
    model = _project(hrrr_met, root, options, n_workers=2)
    first = len(fake_k8s.requests)
    looked_up = []  # every host name this process resolves while it runs
    resolve = socket.getaddrinfo

    def recording_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    states = model.run(profile="k8s", quiet=True)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    assert sorted(states.values()) == ["complete"] * 3
    assert sorted(model.status().ids("complete")) == sorted(states)
    assert float(model.footprints["default"].load().sum()) > 0
    requests = [path for _, path in fake_k8s.requests[first:]]
    # Only a ClusterIP service is port-forwarded (a LoadBalancer has an ingress IP).
    forwards = [path for path in requests if "/portforward" in path]
    assert forwards and all("/pods/stilt-dask-scheduler-0/portforward" in p for p in forwards)
    # KubeCluster went straight to the port-forward: it never tried the service's DNS
    # name (outside the cluster, ~20 retries of 0.5 s for each port).
    assert looked_up and not [h for h in looked_up if str(h).startswith("stilt-dask-scheduler")]
    assert [key for key in fake_k8s.store if key[3] == "daskclusters"] == []
    assert fake_k8s.clusters == {}


@pytest.mark.filterwarnings("ignore:Bare functions are deprecated:DeprecationWarning")
@pytest.mark.timeout(240)
def test_adapt_from_zero_to_two_workers(fake_k8s, hrrr_met, tmp_path):
    adapt = {"minimum": 0, "maximum": 2}
    model = _project(hrrr_met, str(tmp_path / "proj"), {}, receptors=RECEPTORS, adapt=adapt)
    execution = model.config.execution_for("k8s")
    counts: list[int] = []  # the operator's worker count, at each change
    stop = threading.Event()

    def watch() -> None:
        # One look after the test said stop: the last change is always seen.
        while True:
            stopping = stop.is_set()
            now = _fake_workers(fake_k8s)
            if counts[-1] != now:
                counts.append(now)
            if stopping:
                return
            time.sleep(0.05)

    cluster = make_cluster(execution)
    counts.append(_fake_workers(fake_k8s))  # before any work
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        autoscalers = [obj for key, obj in fake_k8s.store.items() if key[3] == "daskautoscalers"]
        assert [(a["spec"]["minimum"], a["spec"]["maximum"]) for a in autoscalers] == [(0, 2)]
        with Client(cluster) as client:
            states = model.run(client=client, quiet=True)
            assert sorted(states.values()) == ["complete"] * 4
            # Idle again: the autoscaler gives every worker back (minimum 0). The
            # deadline only turns a hang into a failure.
            deadline = time.monotonic() + 120
            while _fake_workers(fake_k8s) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        stop.set()
        watcher.join()
        cluster.close()

    assert counts[0] == 0, counts  # no worker until there was work
    assert max(counts) == 2, counts  # grew to the maximum, never beyond
    assert counts[-1] == 0, counts
    assert model.status().counts()["complete"] == 4
    assert [key for key in fake_k8s.store if key[3] in ("daskclusters", "daskautoscalers")] == []
