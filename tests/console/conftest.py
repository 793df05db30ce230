"""Fixtures of the console's browser tests: headless Chromium driven by selenium, and a
gateway on real Redis with the recording executor.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``.ci/run``
installs both). Without them the tests skip, or fail when
``FLOW_ROUTER_REQUIRE_BROWSER`` is set (as CI sets it). Chromium runs with a fresh
profile and without any background networking, so the page under test is the
only thing it loads.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.store.base import Store
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import open_store

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("FLOW_ROUTER_REQUIRE_BROWSER"):
            pytest.fail(f"the browser tests need a browser: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def redis_store(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, redis_server: Any
) -> Iterator[Store]:
    store = open_store("redis", request)
    yield store
    bg_loop.run(store.close())


@pytest.fixture
def gateway(
    redis_store: Store, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    server = start_gateway(bg_loop, redis_store, recording_executor)
    yield server
    bg_loop.run(server.stop())


def screenshot_path(tmp_path: Path) -> Path:
    """Where a test keeps its screenshot: ``FLOW_ROUTER_CONSOLE_SCREENSHOT`` (docs/console.png
    is made so), else the test's temporary directory."""
    chosen = os.environ.get("FLOW_ROUTER_CONSOLE_SCREENSHOT")
    return Path(chosen) if chosen else tmp_path / "console.png"


# Without selenium the browser modules cannot even be imported: leave them out (they
# would skip anyway), unless the browser is required, when the import error fails.
if importlib.util.find_spec("selenium") is None and not os.environ.get(
    "FLOW_ROUTER_REQUIRE_BROWSER"
):
    collect_ignore = ["test_console_browser.py", "test_console_auth_scale.py"]
