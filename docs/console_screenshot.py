"""Makes docs/console.png anew: a private platform, a tenant's cluster with a vector index and a
snapshot, and its page in the console in Debian's headless chromium, as a tenant sees it.

Run: .venv/bin/python docs/console_screenshot.py   (needs chromium: apt install chromium)
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not docs/

import time
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from bench.private_platform import AUTH, private_platform

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
OUT = Path(__file__).resolve().parent / "console.png"
RECIPES = [{"id": "pie", "vector": [1, 0, 0], "fields": {"title": "apple pie"}},
           {"id": "soup", "vector": [0, 1, 0], "fields": {"title": "leek soup"}},
           {"id": "tart", "vector": [0.9, 0.2, 0], "fields": {"title": "cherry tart"}}]


def wait(check, what: str, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout_s} s")


def main() -> None:
    with private_platform() as running, httpx.Client(base_url=running.api, headers=AUTH, timeout=30) as api:
        tenant = f"acme-{uuid.uuid4().hex[:4]}"
        api.post("/tenants", json={"tenant_org_id": tenant}).raise_for_status()
        key = api.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
        body = {"tenant_org_id": tenant, "user": "alice", "service_name": "web", "replicas": 1, "cpu": "500m",
                "memory": "512Mi", "storage": "5Gi"}
        cluster_id = api.post("/clusters", json=body).json()["id"]
        wait(lambda: api.get(f"/clusters/{cluster_id}").json()["status"] == "ready", "ready")
        api.post(f"/clusters/{cluster_id}/vector-indices",
                 json={"name": "recipes", "dimensions": 3, "text_fields": ["title"]}).raise_for_status()
        api.post(f"/clusters/{cluster_id}/vector-indices/recipes/documents",
                 json={"documents": RECIPES}).raise_for_status()
        api.post(f"/clusters/{cluster_id}/snapshots").raise_for_status()
        wait(lambda: [s for s in api.get(f"/clusters/{cluster_id}/snapshots").json()["snapshots"]
                      if s["status"] == "success"], "a snapshot")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{running.api}/console")
            page.fill("#key", key)
            page.click("#signin")
            page.locator(f'tr[data-cluster="{cluster_id}"]').click()
            expect(page.locator('#indices tr[data-index="recipes"] .docs')).to_have_text("3", timeout=60_000)
            page.fill("#search-query", "[0, 1, 0]")
            page.fill("#search-k", "2")
            page.click("#search-run")
            expect(page.locator("#hits .hit").first).to_have_attribute("data-id", "soup")
            expect(page.locator("#snapshots")).to_contain_text("success", timeout=30_000)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
        api.delete(f"/clusters/{cluster_id}")
    print(f"written: {OUT}")


if __name__ == "__main__":
    main()
