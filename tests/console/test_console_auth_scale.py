"""The console with ``--credentials`` (nothing shown or fetched until a key is entered,
then every request signed in the browser), and at scale: 500 flows of 20 aliases,
with the first render and an update measured in the browser and printed (numbers
to report, not assertions).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from router.model import Alias, AliasUpdate, Flow, Route, new_id
from router.store.base import Store
from tests.console.test_console_browser import (
    configured,
    console_errors,
    open_console,
    text,
    wait_for,
)
from tests.dialects.cloudflow_client import client_for, create_alias, create_flow
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.rollout.v1_helpers import signed_call

pytestmark = pytest.mark.network

KEY_ID, SECRET = "AKIDEXAMPLE", "secret"  # the keys the SDK clients of the tests sign with


@pytest.fixture
def signed_gateway(
    redis_store: Store, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    server = start_gateway(bg_loop, redis_store, recording_executor, credentials={KEY_ID: SECRET})
    yield server
    bg_loop.run(server.stop())


def visible(driver: Any, section: str) -> bool:
    return bool(driver.execute_script(f"return !document.getElementById('{section}').hidden"))


def test_with_credentials_the_page_shows_nothing_until_a_key_is_entered(
    browser: Any, signed_gateway: GatewayServer
) -> None:
    client = client_for(signed_gateway)  # signs: the dialects need it too
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 60), ("2", 40))
    # the data is not reachable unsigned
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(signed_gateway.url + "/v1/console/flows", timeout=10)
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["code"] == "MissingAuthenticationToken"

    open_console(browser, signed_gateway)
    wait_for(browser, lambda d: visible(d, "login"))
    assert not visible(browser, "flows") and not visible(browser, "flow")
    assert "orders" not in browser.find_element(By.TAG_NAME, "body").text
    # nothing was fetched from /v1 either: no request could have been signed
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert not [url for url in fetched if "/v1/" in url]

    # a wrong secret is refused by the gateway, and the page still shows nothing
    browser.find_element(By.ID, "key-id").send_keys(KEY_ID)
    browser.find_element(By.ID, "key-secret").send_keys("not-the-secret")
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: "refused the key" in text(d, "#login-error"))
    assert "signature" in text(browser, "#login-error")
    assert visible(browser, "login") and not visible(browser, "flows")
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.get_log("browser")  # the refused request's 403 is logged; later ones must not be

    browser.find_element(By.ID, "key-id").clear()
    browser.find_element(By.ID, "key-id").send_keys(KEY_ID)
    browser.find_element(By.ID, "key-secret").send_keys(SECRET)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: text(d, "a.flow-link") == "orders")
    assert not visible(browser, "login")
    browser.find_element(By.CSS_SELECTOR, "a.flow-link").click()
    wait_for(browser, lambda d: configured(d, "live") == {"1": "0.6000", "2": "0.4000"})
    # the key lives in this tab's session storage only
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.get_cookies() == []
    assert console_errors(browser) == []
    browser.execute_script("sessionStorage.clear()")


def test_signed_actions_and_names_that_need_encoding(
    browser: Any, signed_gateway: GatewayServer, redis_store: Store, bg_loop: BackgroundLoop
) -> None:
    """The page's signatures hold for POSTs and for paths and queries with characters
    SigV4 encodes (the gateway would refuse a canonical request built differently)."""
    client = client_for(signed_gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 100))
    started = signed_call(
        signed_gateway,
        "PUT",
        "/v1/flows/orders/aliases/live/rollout",
        {"targetVersion": "2", "stepWeights": [10, 50], "minStepSeconds": 3600},
    )
    assert started.status == 201, started.body
    odd = "odd name (1)+%*'!~"  # the APIs refuse it; the store may hold it

    async def plant() -> None:
        flow = Flow(id=new_id(), name=odd, created_at=1, updated_at=1, definition="d")
        await redis_store.create_flow(flow)
        await redis_store.publish_version(flow.id, "", 2)
        await redis_store.create_alias(Alias(flow.id, new_id(), "a+b c", (Route(1, 100),)))

    bg_loop.run(plant())
    open_console(browser, signed_gateway)
    wait_for(browser, lambda d: visible(d, "login"))
    browser.find_element(By.ID, "key-id").send_keys(KEY_ID)
    browser.find_element(By.ID, "key-secret").send_keys(SECRET)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "a.flow-link")) == 2)
    browser.find_element(By.ID, "search").send_keys("(1)+%*'!~")  # a signed query
    wait_for(browser, lambda d: text(d, "#flow-count") == "1 of 2 flows")
    browser.find_element(By.CSS_SELECTOR, "a.flow-link").click()
    wait_for(browser, lambda d: text(d, "#flow-name") == odd)
    wait_for(browser, lambda d: configured(d, "a+b c") == {"1": "1.0000"})
    open_console(browser, signed_gateway, "#/flow/orders")
    panel = '.card[data-alias="live"] .rollout'
    wait_for(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{panel}[data-phase="Progressing"]')
    )
    browser.find_element(By.CSS_SELECTOR, f"{panel} button.act-pause").click()  # a signed POST
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{panel}[data-phase="Paused"]'))
    browser.find_element(By.CSS_SELECTOR, f"{panel} button.act-promote").click()  # with a body
    wait_for(browser, lambda d: text(d, f"{panel} .phase") in ("Progressing", "Paused"))
    wait_for(browser, lambda d: "step 2/2" in text(d, panel))
    browser.find_element(By.CSS_SELECTOR, f"{panel} button.act-abort").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{panel}[data-phase="Aborted"]'))
    wait_for(browser, lambda d: configured(d, "live") == {"1": "1.0000"})
    assert text(browser, "#error") == ""
    assert console_errors(browser) == []
    browser.execute_script("sessionStorage.clear()")


# -- scale ----------------------------------------------------------------------------

FLOWS, ALIASES = 500, 20


async def _populate(store: Store) -> None:
    async def one(i: int) -> None:
        flow = Flow(id=new_id(), name=f"flow-{i:04}", created_at=1, updated_at=1, definition="d")
        await store.create_flow(flow)
        await store.publish_version(flow.id, "", 2)
        await store.publish_version(flow.id, "", 3)
        for a in range(ALIASES):
            routes = (Route(1, 100 - a), Route(2, a)) if a else (Route(1, 100),)
            await store.create_alias(Alias(flow.id, new_id(), f"alias-{a:02}", routes))

    for start in range(0, FLOWS, 50):
        await asyncio.gather(*(one(i) for i in range(start, start + 50)))


async def _reweigh(store: Store, flow_name: str, alias: str) -> None:
    flow = await store.get_flow(flow_name)
    update = AliasUpdate(routes=(Route(1, 50), Route(2, 50)))
    await store.update_alias(flow.id, alias, update, 2)


def _timings(driver: Any) -> dict[str, float]:
    found: dict[str, str] = driver.execute_script("return {...document.body.dataset}")
    return {k: float(v) for k, v in found.items()}


@pytest.mark.slow
def test_500_flows_of_20_aliases_render_and_update(
    browser: Any,
    gateway: GatewayServer,
    redis_store: Store,
    bg_loop: BackgroundLoop,
    tmp_path: Path,
) -> None:
    bg_loop.run(_populate(redis_store))
    open_console(browser, gateway)
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#flow-table tbody tr")) == 50)
    first = _timings(browser)
    assert text(browser, "#flow-count") == f"{FLOWS} of {FLOWS} flows"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".alias-chip")) == 50 * ALIASES
    wait_for(browser, lambda d: _timings(d)["updates"] >= first["updates"] + 1)
    update = _timings(browser)  # nothing changed: fetched, compared, not redrawn
    browser.save_screenshot(str(tmp_path / "flows.png"))
    bg_loop.run(_reweigh(redis_store, "flow-0001", "alias-05"))
    chip = 'tr[data-flow="flow-0001"] .alias-chip[data-alias="alias-05"]'
    wait_for(browser, lambda d: text(d, chip) == "alias-05 1:50 2:50")
    changed = _timings(browser)  # one alias changed: the page of 50 flows redrawn
    browser.find_element(By.ID, "search").send_keys("flow-0499")
    wait_for(browser, lambda d: text(d, "#flow-count") == f"1 of {FLOWS} flows")
    browser.find_element(By.CSS_SELECTOR, "a.flow-link").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.alias")) == ALIASES)
    detail = _timings(browser)
    wait_for(browser, lambda d: _timings(d)["updates"] >= detail["updates"] + 1)
    detail_update = _timings(browser)
    assert console_errors(browser) == []
    print(
        f"\nconsole at {FLOWS} flows x {ALIASES} aliases (ms): "
        f"flows list first render {first['firstRenderMs']:.0f} after navigation start "
        f"(fetch {first['fetchMs']:.0f}, render {first['renderMs']:.0f}); "
        f"list update {update['updateMs']:.0f} (fetch {update['fetchMs']:.0f}, "
        f"render {update['renderMs']:.0f}); "
        f"list update with a change {changed['updateMs']:.0f} "
        f"(fetch {changed['fetchMs']:.0f}, render {changed['renderMs']:.0f}); "
        f"flow of {ALIASES} aliases: fetch {detail['fetchMs']:.0f}, "
        f"render {detail['renderMs']:.0f}; its update {detail_update['updateMs']:.0f} "
        f"(fetch {detail_update['fetchMs']:.0f}, render {detail_update['renderMs']:.0f})"
    )
