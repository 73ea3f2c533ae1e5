"""Headless Chromium for the dashboard's browser tests: Debian's `chromium` and
`chromium-driver` packages (a test tool's own browser download fails on these machines)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"


def chromium() -> webdriver.Chrome:
    """A headless Chromium; skipped locally without the packages, a failure in CI."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "apt-get install -y chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium: {message}")
        pytest.skip(f"no Chromium: {message}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--lang=en",
    ):
        options.add_argument(argument)
    # The console's messages, so a test can see what the Content-Security-Policy refused.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    return driver


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """What Chromium's console said the page's Content-Security-Policy refused since the last
    call (reading the log empties it)."""
    return [
        str(entry.get("message", ""))
        for entry in driver.get_log("browser")
        if "Content Security Policy" in str(entry.get("message", ""))
    ]


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save what the browser shows under tests/artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def keep_as_doc(path: Path, doc: Path) -> None:
    """Refresh a committed screenshot (docs/) when asked: UPDATE_SCREENSHOTS=1."""
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copyfile(path, doc)
