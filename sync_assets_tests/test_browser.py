"""What a person sees in the Dagster UI, in headless Chromium (opt-in: pytest -m browser)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sync_assets_tests import cruise
from sync_assets_tests.conftest import ROOT, Pair, Webserver, launch_sync

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium spends its start on connections this machine's closed network refuses.
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
# SYNC_ASSETS_SCREENSHOTS=docs keeps the lineage screenshot the README shows.
SCREENSHOTS = os.environ.get("SYNC_ASSETS_SCREENSHOTS")


@pytest.fixture
def page():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium binary (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        yield page
        browser.close()


def show(page, url: str, ready: str) -> str:
    """Open url, wave away Dagster's first-visit dialog, wait until `ready` shows and nothing is loading."""
    page.goto(url, wait_until="networkidle")
    page.wait_for_selector(f"text={ready}", timeout=60_000)
    skip = page.locator("button:has-text('Skip')")
    if skip.count():
        skip.first.click()
    for _ in range(60):
        if "Loading..." not in page.inner_text("body"):
            break
        page.wait_for_timeout(500)
    page.wait_for_timeout(500)
    return page.inner_text("body")


def test_asset_lineage_and_a_check_as_a_person_sees_them(
    cruise_pair: Pair, webserver: Webserver, page, tmp_path: Path
) -> None:
    launch_sync(webserver)
    base = f"http://127.0.0.1:{webserver.port}"

    lineage = show(page, f"{base}/locations/sync_assets/asset-groups/public/lineage", "cruises")
    page.screenshot(path=str(tmp_path / "asset-lineage.png"))
    # every table as a node, the synced ones materialized with their check passed, all of kind Postgres
    for table in (*cruise.SYNCED, *cruise.PRESERVED):
        assert table in lineage
    assert lineage.count("Materialized") == len(cruise.SYNCED)
    assert lineage.count("1 / 1 Passed") >= len(cruise.SYNCED)
    assert lineage.count("Postgres") >= len(cruise.SYNCED) + len(cruise.PRESERVED)
    assert "Materialize all (10)" in lineage

    check = show(page, f"{base}/assets/staging/public/cruises?view=checks", "row_count_matches")
    page.screenshot(path=str(tmp_path / "check.png"))
    assert "Staging's rows after the run equal production's rows in the snapshot the run read." in check
    assert "staging has 210 rows, the snapshot this run copied has 210" in check
    assert "Passed" in check

    if SCREENSHOTS:
        for name in ("asset-lineage.png", "check.png"):
            shutil.copy(tmp_path / name, ROOT / SCREENSHOTS / name)
