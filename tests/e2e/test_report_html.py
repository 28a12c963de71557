"""The report HTML in headless Chromium: it opens as a self-contained file, every chart
image decodes (naturalWidth > 0) and is not blank, both in the PNG data and in the
browser's own screenshot. Uses the desk tests' browser helper (tests/e2e/browser.py)
through the ``browser`` fixture of tests/e2e/conftest.py; never skipped."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.test_report_dataset import PERIOD, dataset  # noqa: F401


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def _assert_not_blank(png: bytes, what: str, min_share: float = 0.005) -> None:
    pixels = _pixels(png)
    assert pixels.shape[0] > 20 and pixels.shape[1] > 20, what
    assert pixels.std() > 5.0, f"{what} looks blank (pixel std {pixels.std():.2f})"
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > min_share, f"{what}: only {non_white:.4f} of the pixels are not white"


def _write(dataset, tmp_path: Path, start: str, end: str, name: str) -> Path:
    from report import metrics, render

    endpoints, tickets_url = dataset
    data = metrics.collect(metrics.Period.of(start, end), endpoints=endpoints, tickets_url=tickets_url)
    return render.write_report(data, tmp_path / name)


def _open(browser, path: Path) -> None:
    browser.set_window_size(1280, 900)
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(i => i.complete)"))


def _check_page(browser, path: Path, tmp_path: Path) -> None:
    from report import render

    _open(browser, path)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Prestaties van de digitale assistent"
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert len(images) == len(render.CHARTS)
    for image in images:
        src = image.get_attribute("src")
        alt = image.get_attribute("alt")
        assert src.startswith("data:image/png;base64,"), alt
        width = browser.execute_script("return arguments[0].naturalWidth", image)
        height = browser.execute_script("return arguments[0].naturalHeight", image)
        assert width > 0 and height > 0, f"chart '{alt}' did not decode in the browser"
        _assert_not_blank(base64.b64decode(src.split(",", 1)[1]), f"PNG of chart '{alt}'")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        _assert_not_blank(image.screenshot_as_png, f"on-screen chart '{alt}'")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 120, 16000))
    screenshot = tmp_path / f"{path.parent.name}.png"
    assert browser.save_screenshot(str(screenshot))
    _assert_not_blank(screenshot.read_bytes(), "page screenshot", min_share=0.02)


def test_report_opens_in_chromium_and_charts_render(browser, dataset, tmp_path):
    path = _write(dataset, tmp_path, *PERIOD, "maart")
    _check_page(browser, path, tmp_path)
    text = browser.find_element(By.TAG_NAME, "body").text
    for expected in ("Kerncijfers", "Zelf beantwoord", "In één keer beantwoord", "Overgedragen aan het KCC",
                     "Reactietijd", "wanneer is het gemeentehuis open", "[telefoon]", "Zo lees je dit rapport"):
        assert expected in text, expected
    for forbidden in ("31612340004", "0612345678", "web-visitor-3"):
        assert forbidden not in text


def test_empty_report_opens_with_placeholder_charts(browser, dataset, tmp_path):
    path = _write(dataset, tmp_path, "2026-03-10", "2026-03-12", "leeg")
    _check_page(browser, path, tmp_path)
    assert "Geen gegevens in deze periode" in browser.find_element(By.TAG_NAME, "body").text
