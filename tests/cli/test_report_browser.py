"""``nnx-compat report``'s page in a real browser: headless Chromium, driven by playwright, opens
it from ``file://``.

Needs the system's Chromium (Debian: ``apt-get install chromium``; ``NNX_COMPAT_CHROMIUM``
names another binary) and playwright (``pip install playwright``, never ``playwright install``:
the browser is the system's). Left out of the default run by its marker; the tox env ``report``
runs it (``pytest -m browser tests/cli/test_report_browser.py``). It also refreshes the
screenshot the README shows, ``docs/_static/report.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nnx_compat.cli import main
from tests.cli.report_sample import write_sample

#: The screenshot the README shows, and the most it may weigh (it is committed).
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "report.png"
MAX_SCREENSHOT_BYTES = 200_000


def _chromium() -> str:
    path = os.environ.get("NNX_COMPAT_CHROMIUM") or shutil.which("chromium")
    assert path, "no chromium on PATH: apt-get install chromium, or set NNX_COMPAT_CHROMIUM"
    return path


@pytest.mark.browser
def test_the_page_in_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    sample = write_sample(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # the screenshot's date: 2026-01-01
    assert main([*sample.args, "-o", "report.html"]) == 0
    url = (tmp_path / "report.html").as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium())
        try:
            page = browser.new_page(
                viewport={"width": 1200, "height": 900}, device_scale_factor=1, color_scheme="light"
            )
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(url)
            assert requested == [url]  # the page fetches nothing else

            table = page.locator("table#patterns")
            text = table.inner_text()
            for pattern in sample.patterns:
                assert page.locator(f"tr#pattern-{pattern}").is_visible(), pattern
                assert pattern in text, pattern

            chart = page.locator("svg#history-chart")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 150, box
            points = chart.locator('circle[data-series="total"]')
            assert points.count() == len(sample.baselines)
            for index in range(points.count()):
                point = points.nth(index).bounding_box()
                assert point is not None and point["width"] > 0, index

            # the screenshot: the summary, the chart and the table of patterns
            bottom = table.bounding_box()
            assert bottom is not None
            height = int(bottom["y"] + bottom["height"] + 24)
            image = page.screenshot(
                clip={"x": 0, "y": 0, "width": 1200, "height": height}, full_page=True
            )
        finally:
            browser.close()
    assert image.startswith(b"\x89PNG") and len(image) < MAX_SCREENSHOT_BYTES, len(image)
    SCREENSHOT.write_bytes(image)
