"""The web console in a real headless browser (Debian's chromium, driven by Playwright): a tenant
signs in with its key, sees its cluster become ready, opens it and finds documents by text and by
vector; the operator sees the fleet. A screenshot of each page is kept in the test's temp dir."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import OPERATOR_KEY, key_header, seed_request, tenant_with_key
from tests.helpers import wait_for_status

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test`; Playwright downloads nothing here
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def tenant(api):
    return tenant_with_key(api)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def sign_in(page, settings, key: str) -> None:
    page.goto(f"http://127.0.0.1:{settings.api_port}/console")
    page.fill("#key", key)
    page.click("#signin")


def test_a_tenant_sees_its_cluster_become_ready_and_finds_documents(api, settings, tenant, page, tmp_path):
    name, key = tenant
    as_tenant = httpx.Client(base_url=str(api.base_url), headers=key_header(key), timeout=30)
    cluster = as_tenant.post("/clusters", json=seed_request(tenant_org_id=name, service_name="web")).json()
    try:
        sign_in(page, settings, key)
        expect(page.locator("#who")).to_have_text(f"tenant {name}")
        row = page.locator(f'tr[data-cluster="{cluster["id"]}"]')
        expect(row.locator(".status")).to_contain_text("ready", timeout=120_000)  # live, without reloading
        expect(row.locator(".health")).not_to_have_text("-")

        assert as_tenant.post(f"/clusters/{cluster['id']}/vector-indices", json={
            "name": "recipes", "dimensions": 3, "text_fields": ["title"]}).status_code == 201
        assert as_tenant.post(f"/clusters/{cluster['id']}/vector-indices/recipes/documents", json={"documents": [
            {"id": "pie", "vector": [1, 0, 0], "fields": {"title": "apple pie"}},
            {"id": "soup", "vector": [0, 1, 0], "fields": {"title": "leek soup"}},
            {"id": "tart", "vector": [0.9, 0.2, 0], "fields": {"title": "cherry tart"}}]}).json()["indexed"] == 3

        row.click()
        expect(page.locator("#cluster")).to_contain_text(cluster["id"])
        expect(page.locator('#indices tr[data-index="recipes"] .docs')).to_have_text("3", timeout=30_000)
        page.fill("#search-query", "title:pie")  # a text query, through the gateway endpoint
        page.click("#search-run")
        expect(page.locator("#hit-count")).to_have_text("1 hits")
        expect(page.locator("#hits .hit")).to_contain_text("apple pie")
        page.fill("#search-query", "[0, 1, 0]")  # a vector: kNN through the API
        page.fill("#search-k", "2")
        page.click("#search-run")
        expect(page.locator("#hits .hit").first).to_have_attribute("data-id", "soup")
        page.click("#snapshot-take")  # the snapshots box: one taken from the page, listed with when it began
        snapshot_row = page.locator("#snapshots tr", has_text="manual-")
        expect(snapshot_row.locator("td").nth(2)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d"),
                                                              timeout=30_000)
        expect(page.locator("#events")).to_contain_text("ready", timeout=15_000)
        expect(page.locator("#usage-chart")).to_be_visible()
        page.screenshot(path=str(tmp_path / "console-cluster.png"), full_page=True)
        assert (tmp_path / "console-cluster.png").stat().st_size > 10_000

        # a sleeping cluster's page says what it holds, from the record: watching it wakes nothing
        assert as_tenant.post(f"/clusters/{cluster['id']}/hibernate").status_code == 202
        wait_for_status(as_tenant, cluster["id"], "hibernated", timeout_s=90)
        expect(page.locator("#asleep")).to_contain_text("holding 3 documents", timeout=15_000)
        page.wait_for_timeout(5_000)  # two more looks of the page
        assert as_tenant.get(f"/clusters/{cluster['id']}").json()["status"] == "hibernated"
    finally:
        as_tenant.delete(f"/clusters/{cluster['id']}")
        as_tenant.close()


def test_the_operator_sees_every_tenant_and_a_refused_key_is_said(settings, tenant, page, tmp_path):
    sign_in(page, settings, "ess_0000000000000000_wrong")
    expect(page.locator("#signin-error")).to_contain_text("API key")
    sign_in(page, settings, OPERATOR_KEY)
    expect(page.locator(f'#fleet tr[data-tenant="{tenant[0]}"]')).to_be_visible()
    expect(page.locator("#who")).to_contain_text("operator")
    page.screenshot(path=str(tmp_path / "console-fleet.png"), full_page=True)


def test_the_gateway_answers_the_consoles_preflight(settings, api):
    """The console (the API's origin) reads indices at the endpoint (the gateway's origin)."""
    url = f"{settings.public_gateway_url}/c000000000000/_cat/indices"
    origin = {"Origin": f"http://127.0.0.1:{settings.api_port}"}
    preflight = httpx.options(url, headers={**origin, "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = httpx.get(url, headers=origin)  # the refusal itself is readable by the page
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
