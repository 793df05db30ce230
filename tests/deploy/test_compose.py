"""deploy/compose: the file parses and hangs together (no container engine runs here).

``docker compose config -q`` runs when the docker CLI has the compose plugin (it
needs no daemon); the checks below run everywhere: the services docs/deploy.md
promises, built or pinned images, healthchecks and start order, the files they
mount, nginx and Prometheus pointing at the gateway services, and the executor
URL template reaching one executor service per version.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from router.forward import UpstreamTemplate
from tests.deploy.conftest import COMPOSE, DASHBOARD, load_yaml, run

COMPOSE_DIR = COMPOSE.parent
GATEWAYS = ("gateway-1", "gateway-2")
EXECUTORS = {"1": "executor-v1", "2": "executor-v2"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def test_docker_compose_accepts_it() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed: compose file checked by parsing only")
    if run(docker, "compose", "version", timeout=30).returncode != 0:
        pytest.skip("docker CLI has no compose plugin: compose file checked by parsing only")
    result = run(docker, "compose", "-f", str(COMPOSE), "config", "-q", timeout=60)
    assert result.returncode == 0, result.stderr


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        "redis", *GATEWAYS, *EXECUTORS.values(), "lb", "prometheus", "grafana",
    }  # fmt: skip


def test_images_are_built_here_or_pinned(services: dict[str, Any]) -> None:
    root = COMPOSE_DIR.parents[1]
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE_DIR / service["build"]["context"]).resolve()
            assert context == root, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert service["image"] == "flow-router:local", name
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    for name in (*GATEWAYS, *EXECUTORS.values()):
        assert "build" in services[name], f"{name} runs the image built from the Dockerfile"


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: exec-form healthcheck"


def test_gateways_wait_for_what_they_need(services: dict[str, Any]) -> None:
    for name in GATEWAYS:
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        for executor in EXECUTORS.values():
            assert depends[executor]["condition"] == "service_healthy", name
        assert "/readyz" in services[name]["healthcheck"]["test"], name
    lb = services["lb"]["depends_on"]
    assert {g: lb[g]["condition"] for g in GATEWAYS} == dict.fromkeys(GATEWAYS, "service_healthy")
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_gateways_are_configured_for_redis_and_the_executors(services: dict[str, Any]) -> None:
    for name in GATEWAYS:
        env = services[name]["environment"]
        assert env["FLOW_ROUTER_STORE"] == "redis://redis:6379/0"
        # Listening on the compose network: flow-router needs one of these there.
        assert "FLOW_ROUTER_INSECURE" in env or "FLOW_ROUTER_CREDENTIALS" in env
        template = UpstreamTemplate(env["FLOW_ROUTER_UPSTREAM"])
        for version, executor in EXECUTORS.items():
            url = template.url("orders", "K3J9ABCDEF", version, "prod")
            assert url.startswith(f"http://{executor}:9090/"), url
            assert url.endswith(f"/flows/orders/versions/{version}/executions"), url
        # Long enough for flow-router's drain (30 s) and its workers' exit (5 s).
        assert int(services[name]["stop_grace_period"].rstrip("s")) >= 35
        assert "ports" not in services[name], "reached through the load balancer only"


def test_executors_run_the_reference_executor_on_their_port(services: dict[str, Any]) -> None:
    for name in EXECUTORS.values():
        command = services[name]["entrypoint"]
        assert command[:3] == ["tini", "--", "flow-router"]
        assert command[3] == "executor"
        assert command[command.index("--port") + 1] == "9090"
        assert command[command.index("--host") + 1] == "0.0.0.0"


def test_published_ports_are_loopback_only(services: dict[str, Any]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host, host_port, container_port = str(port).split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this machine"
            published[name] = (int(host_port), int(container_port))
    assert published == {"lb": (8080, 8080), "prometheus": (9090, 9090), "grafana": (3000, 3000)}


def _mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out.append(((COMPOSE_DIR / source).resolve(), target))
    return out


def test_mounted_files_exist(services: dict[str, Any]) -> None:
    mounted = {target: source for s in services.values() for source, target in _mounts(s)}
    for target, source in mounted.items():
        assert source.exists(), f"{source} (mounted at {target}) is missing"
    assert mounted["/etc/nginx/conf.d/default.conf"].name == "nginx.conf"
    assert mounted["/etc/prometheus/prometheus.yml"].name == "prometheus.yml"
    assert mounted["/etc/prometheus/alerts.yaml"].name == "alerts.yaml"
    assert mounted["/var/lib/grafana/dashboards/flow-router.json"] == DASHBOARD


def test_nginx_balances_over_both_gateways() -> None:
    conf = re.sub(r"#[^\n]*", "", (COMPOSE_DIR / "nginx.conf").read_text())
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(2), re.M)
    assert sorted(servers) == [(g, "8080") for g in GATEWAYS]
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert re.search(r"listen\s+8080;", conf)
    # A POST (an execution) must never be resent to another replica.
    assert "non_idempotent" not in conf


def test_prometheus_scrapes_both_gateways_and_loads_the_rules(services: dict[str, Any]) -> None:
    config = load_yaml(COMPOSE_DIR.parent / "prometheus" / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "flow-router"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert sorted(targets) == [f"{g}:8080" for g in GATEWAYS]
    assert config["rule_files"] == ["alerts.yaml"]  # beside prometheus.yml, in the container too
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus(
    services: dict[str, Any],
) -> None:
    mounted = {target: source for source, target in _mounts(services["grafana"])}
    provisioning = mounted["/etc/grafana/provisioning"]
    (provider,) = load_yaml(provisioning / "dashboards" / "flow-router.yaml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    port = services["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["url"].endswith(f":{port}")
