"""The operator console in a real browser: headless Chromium against a gateway on
real Redis with the recording executor, traffic and alias changes through the
CloudFlow SDK, rollouts through the /v1 API and the page's own buttons.

Waits are bounded WebDriverWaits on what the page shows (it polls every 2 s);
the only time limit the issue sets, new weights within 3 s, is one of them.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from router.model import Alias, Flow, Route, new_id
from router.store.base import Store
from tests.console.conftest import screenshot_path
from tests.dialects.cloudflow_client import (
    DEFINITION,
    client_for,
    create_alias,
    create_flow,
    routing,
    start,
    update_routes,
)
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor

pytestmark = pytest.mark.network

WAIT_S = 15  # an upper bound for what the page must show; it polls every 2 s


def open_console(driver: Any, gateway: GatewayServer, fragment: str = "") -> None:
    driver.get(f"{gateway.url}/console{fragment}")


def wait_for(driver: Any, check: Any, timeout: float = WAIT_S) -> Any:
    # The page replaces what changed on every poll: an element found a moment ago may be gone.
    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(lambda d: check(d))


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# Readers run in the page, so each one reads the DOM at one instant.


def text(driver: Any, css: str) -> str:
    found: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", css
    )
    return found


def segments(driver: Any, alias: str, kind: str) -> dict[str, str]:
    """Version -> share of one of the alias's bars (``configured``/``realized``)."""
    found: dict[str, str] = driver.execute_script(
        """const out = {};
        for (const s of document.querySelectorAll(arguments[0])) {
          out[s.dataset.version] = s.dataset.share;
        }
        return out;""",
        f'.card[data-alias="{alias}"] .bar[data-kind="{kind}"] .seg',
    )
    return found


def configured(driver: Any, alias: str) -> dict[str, str]:
    return segments(driver, alias, "configured")


def realized_executions(driver: Any, alias: str) -> dict[str, int]:
    found: dict[str, str] = driver.execute_script(
        """const out = {};
        for (const r of document.querySelectorAll(arguments[0])) {
          out[r.dataset.version] = r.querySelector('td.executions').textContent;
        }
        return out;""",
        f'.card[data-alias="{alias}"] table.versions tbody tr',
    )
    return {v: int(n) for v, n in found.items()}


def v1(gateway: GatewayServer, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(gateway.url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# -- the flows ----------------------------------------------------------------------


def test_the_page_lists_the_flows_without_console_errors(
    browser: Any, gateway: GatewayServer
) -> None:
    client = client_for(gateway)
    for name in ("orders", "payments", "refunds"):
        create_flow(client, name, versions=2)
        create_alias(client, name, "live", ("1", 90), ("2", 10))
    open_console(browser, gateway)
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#flow-table tbody tr")) == 3)
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.flow-link")]
    assert names == ["orders", "payments", "refunds"]
    assert text(browser, 'tr[data-flow="orders"] .alias-chip') == "live 1:90 2:10"
    # search narrows the list
    browser.find_element(By.ID, "search").send_keys("pay")
    wait_for(browser, lambda d: text(d, "#flow-count") == "1 of 3 flows")
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.flow-link")] == ["payments"]
    # everything it loaded came from the gateway
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert loaded and all(url.startswith(gateway.url + "/") for url in loaded), loaded
    # and the page never logged an error (a refused script, a failed request, a CSP report)
    assert console_errors(browser) == []


def test_new_weights_show_within_3_s_of_update_flow_alias(
    browser: Any, gateway: GatewayServer
) -> None:
    client = client_for(gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 90), ("2", 10))
    open_console(browser, gateway, "#/flow/orders")
    wait_for(browser, lambda d: configured(d, "live") == {"1": "0.9000", "2": "0.1000"})
    client.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="orders",
            name="live",
            routing_configurations=update_routes(("1", 30), ("2", 70)),
        )
    )
    wait_for(browser, lambda d: configured(d, "live") == {"1": "0.3000", "2": "0.7000"}, 3)
    assert "revision" in text(browser, '.card[data-alias="live"] h3')
    assert console_errors(browser) == []


def test_the_realised_split_follows_traffic(
    browser: Any, gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    client = client_for(gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 80), ("2", 20))
    open_console(browser, gateway, "#/flow/orders")
    wait_for(browser, lambda d: realized_executions(d, "live") == {"1": 0, "2": 0})
    for i in range(120):  # named and unnamed: both are recorded and counted
        start(client, "orders", "live", "{}", name=f"run-{i}" if i % 2 else None)
    sent = recording_executor.versions()
    assert sum(sent.values()) == 120 and set(sent) == {"1", "2"}
    # the page shows exactly what the executor received, version by version
    expected = {v: sent[v] for v in ("1", "2")}
    wait_for(browser, lambda d: realized_executions(d, "live") == expected)
    shares = {v: float(share) for v, share in segments(browser, "live", "realized").items()}
    assert shares == pytest.approx({v: n / 120 for v, n in expected.items()}, abs=1e-4)
    # the recording executor answers Succeeded: every final outcome is a success
    wait_for(
        browser,
        lambda d: text(d, '.card[data-alias="live"] tr[data-version="1"] .success') == "100.0%",
    )
    assert console_errors(browser) == []


FAILED = b'{"status": "Failed", "error": "E.Boom", "cause": "the test executor fails it"}'


def test_outcomes_and_run_times_per_version_from_real_executions(
    browser: Any, gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    client = client_for(gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 50), ("2", 50))
    recording_executor.behaviours["1"] = Behaviour(delay_s=0.04)  # runs of 40 ms and more
    recording_executor.behaviours["2"] = Behaviour(body=FAILED)  # every run of 2 fails
    for _ in range(30):
        start(client, "orders", "live", "{}")
    sent = recording_executor.versions()
    open_console(browser, gateway, "#/flow/orders")
    wait_for(browser, lambda d: realized_executions(d, "live") == {v: sent[v] for v in "12"})
    row = '.card[data-alias="live"] tr[data-version="{}"] .{}'
    wait_for(browser, lambda d: text(d, row.format("1", "success")) == "100.0%")
    wait_for(browser, lambda d: text(d, row.format("2", "success")) == "0.0%")
    p50 = text(browser, row.format("1", "p50"))
    assert p50.endswith(" ms") and 32 <= float(p50[:-3]) <= 1000, p50  # its bin holds 40 ms
    # the failures are drawn: red bars in version 2's chart, none in version 1's
    chart = '.card[data-alias="live"] tr[data-version="{}"] svg.spark rect.failed'
    assert len(browser.find_elements(By.CSS_SELECTOR, chart.format("2"))) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, chart.format("1")) == []
    assert console_errors(browser) == []


# -- rollouts ---------------------------------------------------------------------------


def test_abort_on_an_active_rollout_restores_the_routes(
    browser: Any, gateway: GatewayServer, recording_executor: RecordingExecutor, tmp_path: Path
) -> None:
    client = client_for(gateway)
    recording_executor.behaviours["1"] = Behaviour(delay_s=0.02)
    recording_executor.behaviours["2"] = Behaviour(body=FAILED)  # a failing baseline version
    create_flow(client, "orders", versions=3)
    create_alias(client, "orders", "live", ("1", 70), ("2", 30))
    create_alias(client, "orders", "beta", ("3", 100))
    before = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="orders", name="live")
    ).body.alias
    body = {"targetVersion": "3", "stepWeights": [20, 50], "minStepSeconds": 3600}
    assert (
        v1(gateway, "PUT", "/v1/flows/orders/aliases/live/rollout", body)["phase"] == "Progressing"
    )
    for _ in range(60):
        start(client, "orders", "live", "{}")
    open_console(browser, gateway, "#/flow/orders")
    panel = '.card[data-alias="live"] .rollout'
    wait_for(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{panel}[data-phase="Progressing"]')
    )
    wait_for(browser, lambda d: sum(realized_executions(d, "live").values()) == 60)
    assert configured(browser, "live")["3"] == "0.2000"  # the canary's step weight
    assert "canary weight 20%" in text(browser, panel)
    browser.save_screenshot(str(screenshot_path(tmp_path)))
    browser.find_element(By.CSS_SELECTOR, f"{panel} button.act-abort").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{panel}[data-phase="Aborted"]'))
    wait_for(browser, lambda d: configured(d, "live") == {"1": "0.7000", "2": "0.3000"})
    after = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="orders", name="live")
    ).body.alias
    assert routing(after.routing_configurations) == routing(before.routing_configurations)
    assert routing(after.routing_configurations) == [("1", 70), ("2", 30)]
    disabled = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((b) => b.disabled);",
        f"{panel} button",
    )
    assert disabled == [True, True, True, True]
    assert console_errors(browser) == []


# -- hostile names ----------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)>"


def test_a_flow_named_like_markup_renders_as_text(
    browser: Any, gateway: GatewayServer, redis_store: Store, bg_loop: BackgroundLoop
) -> None:
    # The APIs refuse such names; the store may still hold one (written by another
    # tool, or an older gateway), and the page must show it as the text it is.
    async def plant() -> None:
        flow = Flow(id=new_id(), name=HOSTILE, created_at=1, updated_at=1, definition=DEFINITION)
        await redis_store.create_flow(flow)
        await redis_store.publish_version(flow.id, "", 2)
        alias = Alias(flow.id, new_id(), "<script>alert(2)</script>", (Route(1, 100),))
        await redis_store.create_alias(alias)

    bg_loop.run(plant())
    open_console(browser, gateway)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a.flow-link"))
    link = browser.find_element(By.CSS_SELECTOR, "a.flow-link")
    assert link.text == HOSTILE
    link.click()
    wait_for(browser, lambda d: text(d, "#flow-name") == HOSTILE)
    assert text(browser, ".card.alias h3").startswith("<script>alert(2)</script>")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no alert is open
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return document.scripts.length") == 3  # ours only
    assert console_errors(browser) == []


def test_the_page_answers_with_a_strict_content_security_policy(gateway: GatewayServer) -> None:
    for path in ("/console", "/console/static/console.js", "/console/static/console.css"):
        with urllib.request.urlopen(gateway.url + path, timeout=10) as response:
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "default-src 'none'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = urllib.request.urlopen(gateway.url + "/console", timeout=10).read().decode()
    assert "<script>" not in page and "http://" not in page and "https://" not in page.lower()
