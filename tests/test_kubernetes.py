"""The Kubernetes backend, offline: no Kubernetes API server can run here.

1. The DaskCluster resource :func:`kubernetes_spec` builds validates against the
   Dask operator's own CRD schema (shipped in the dask-kubernetes wheel) and its
   scheduler and worker pods against the upstream Pod schema (kubernetes-validate,
   strict), with negative controls showing both checks can fail.
2. The unmodified ``KubeCluster``, started by :func:`make_cluster`, runs real
   simulations against the fake API server and mini operator in
   ``../shared/tools/k8s``: they start a real Dask scheduler and workers in this
   process, configured from the pod spec KubeCluster submitted.

See docs/kubernetes.md for what this does not cover.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from distributed import Client

from pystilt_dask.config import ExecutionConfig, ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.execution import kubernetes_spec, make_cluster, run_waves
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
        env.pop("DASK_DISTRIBUTED__SCHEDULER__DEFAULT_TASK_DURATIONS", None)  # scheduler only
        assert env == CLUSTER["env"]
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
    assert worker["env"] == [
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
    assert json.loads(env["DASK_DISTRIBUTED__SCHEDULER__DEFAULT_TASK_DURATIONS"]) == {
        "stilt-sim": "1m"
    }


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
    # LoadBalancer: with ClusterIP, KubeCluster port-forwards, which the fake cannot do.
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

            outcomes = list(
                run_waves(client, model.location, model.simulations.incomplete(), model.config)
            )
            assert sorted(o.sim_id for o in outcomes) == sorted(sim_ids)
            assert {(o.state, o.error) for o in outcomes} == {(State.COMPLETE.value, None)}
            assert "stilt-sim" in client.run_on_scheduler(_task_prefixes)
    finally:
        cluster.close()

    assert model.status().ids(State.COMPLETE) == sim_ids
    assert float(model.footprints["default"].load().sum()) > 0
    assert [key for key in fake_k8s.store if key[3] == "daskclusters"] == []
    assert fake_k8s.clusters == {}
