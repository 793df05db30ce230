"""deploy/kubernetes: schema-valid offline, and consistent with the image and the gateway.

``kubernetes-validate`` checks every built-in resource against the bundled
OpenAPI schemas of the oldest and newest Kubernetes versions we claim, in strict
mode (unknown fields are errors). The ServiceMonitor is a CRD the package has no
schema for: its shape is checked by hand. ``kubectl kustomize`` renders the
kustomizations when kubectl is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DOCKERFILE, KUBERNETES, load_yaml, load_yaml_documents, run, tool
from tests.deploy.dockerfile import parse

VERSIONS = ("1.28.0", "1.33.0")  # oldest supported upstream when written, and a recent one
KUSTOMIZATIONS = (KUBERNETES, KUBERNETES / "redis-trial")
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
DRAIN_S = 30 + 5  # flow-router's --drain-timeout default, plus its workers' exit grace


def _manifests(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for directory in KUSTOMIZATIONS
        for path in _manifests(directory)
        for doc in load_yaml_documents(path)
    ]


RESOURCES = _resources()


def _one(kind: str, name: str = "flow-router") -> dict[str, Any]:
    (found,) = [r for _, r in RESOURCES if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_lists_every_manifest(directory: Path) -> None:
    kustomization = load_yaml(directory / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in _manifests(directory)]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "resource", RESOURCES, ids=[f"{p.parent.name}/{r['kind']}" for p, r in RESOURCES]
)
def test_resources_are_schema_valid(resource: tuple[Path, dict[str, Any]], version: str) -> None:
    _, document = resource
    if (document["apiVersion"], document["kind"]) in CRDS:
        pytest.skip("a CRD: no bundled schema (see test_service_monitor_selects_the_service)")
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomize_renders(directory: Path) -> None:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: kustomizations checked by listing only")
    result = run(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    for document in rendered:
        if (document["apiVersion"], document["kind"]) not in CRDS:
            kubernetes_validate.validate(document, VERSIONS[-1], strict=True)
    images = [
        c["image"]
        for d in rendered
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    if directory == KUBERNETES:
        assert images == ["flow-router:0.1.0"]


def _container() -> dict[str, Any]:
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_probes_use_the_health_endpoints() -> None:
    container = _container()
    port = container["ports"][0]
    assert (port["name"], port["containerPort"]) == ("http", 8080)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_runs_as_the_images_non_root_user() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    user = parse(DOCKERFILE)[-1].all("USER")[-1].args
    uid, gid = (int(x) for x in user.split(":"))
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    container = _container()["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"]["drop"] == ["ALL"]
    # Read-only root: the workers' shared metrics directory needs a writable /tmp.
    mounts = {m["mountPath"] for m in _container()["volumeMounts"]}
    assert "/tmp" in mounts


def test_termination_grace_covers_the_prestop_sleep_and_the_drain() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    sleep = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + DRAIN_S


def test_resources_give_the_entrypoint_a_whole_cpu_limit() -> None:
    resources = _container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    cpu = resources["limits"]["cpu"]
    assert not cpu.endswith("m") or int(cpu[:-1]) % 1000 == 0, "workers = whole CPUs of the limit"


def test_configuration_comes_from_the_configmap_and_secrets() -> None:
    container = _container()
    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"configMapRef": "flow-router", "secretRef": "flow-router"}
    config = _one("ConfigMap")["data"]
    secret = _one("Secret")["stringData"]
    assert "FLOW_ROUTER_STORE" not in config, "the store URL may carry a password: Secret only"
    assert secret["FLOW_ROUTER_STORE"].startswith(("redis://", "rediss://"))
    assert config["FLOW_ROUTER_HOST"] == "0.0.0.0"
    assert all(key.startswith("FLOW_ROUTER_") for key in (*config, *secret))
    # Listening beyond loopback: callers must sign (or FLOW_ROUTER_INSECURE says why not).
    assert "FLOW_ROUTER_CREDENTIALS" in config or "FLOW_ROUTER_INSECURE" in config
    credentials = config["FLOW_ROUTER_CREDENTIALS"]
    (mount,) = [
        m for m in container["volumeMounts"] if credentials.startswith(m["mountPath"] + "/")
    ]
    volumes = _one("Deployment")["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    key = credentials.rsplit("/", 1)[1]
    stored = _one("Secret", volume["secret"]["secretName"])["stringData"]
    assert key in stored


def test_trial_redis_is_what_the_example_secret_reaches() -> None:
    url = _one("Secret")["stringData"]["FLOW_ROUTER_STORE"]
    service = _one("Service", "flow-router-redis-trial")
    port = service["spec"]["ports"][0]["port"]
    assert url == f"redis://{service['metadata']['name']}:{port}/0"
    statefulset = _one("StatefulSet", "flow-router-redis-trial")
    assert statefulset["spec"]["replicas"] == 1
    selector = statefulset["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pods() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert _selects(_one("Service")["spec"]["selector"], pod_labels)
    assert _selects(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    target = _one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "flow-router")


def test_disruption_budget_and_autoscaler_keep_a_replica_serving() -> None:
    hpa = _one("HorizontalPodAutoscaler")["spec"]
    pdb = _one("PodDisruptionBudget")["spec"]
    assert hpa["minReplicas"] >= 2
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_service_monitor_selects_the_service() -> None:
    monitor = _one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    service = _one("Service")
    assert _selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    # The dashboard and the alert rules select job="flow-router".
    assert service["metadata"]["labels"][spec["jobLabel"]] == "flow-router"
