"""Headless Chromium for the end-to-end tests, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` are installed with apt-get when
/usr/bin/chromium or /usr/bin/chromedriver is missing (no browser download by
Selenium itself). If they cannot be had, ``BrowserUnavailable`` says why: the
tests fail with that reason, they are never skipped.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional, Tuple

from tools import debian

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1366,900",
)


class BrowserUnavailable(RuntimeError):
    pass


def ensure_chromium() -> Tuple[Path, Path]:
    """Returns (chromium, chromedriver), installing Debian's packages when needed."""
    try:
        debian.ensure({str(CHROMIUM): "chromium", str(CHROMEDRIVER): "chromium-driver"})
    except debian.PackageUnavailable as exc:
        raise BrowserUnavailable(str(exc)) from exc
    return CHROMIUM, CHROMEDRIVER


def start_browser(user_data_dir: Optional[str] = None):
    """A headless Chrome (Selenium) with a fresh profile; the caller quits it."""
    chromium, chromedriver = ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    profile = user_data_dir or tempfile.mkdtemp(prefix="desk-e2e-chrome-")
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(chromedriver))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # noqa: BLE001
        raise BrowserUnavailable(f"could not start headless Chromium: {type(exc).__name__}: {exc}") from exc
    driver.set_page_load_timeout(30)
    driver._desk_profile_dir = profile  # noqa: SLF001 - removed by stop_browser
    return driver


def stop_browser(driver) -> None:
    profile = getattr(driver, "_desk_profile_dir", None)
    try:
        driver.quit()
    finally:
        if profile:
            shutil.rmtree(profile, ignore_errors=True)
