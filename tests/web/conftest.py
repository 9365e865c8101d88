"""The console's fixtures: one township with its console per module (a real daemon fed by the simulator), and
Debian's chromium driven through its chromedriver (selenium; no browser is downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.web.town import ConsoleTown, start

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"  # kept by the test run: each page at phone and desk size
PHONE, DESK = (390, 844), (1366, 900)


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleTown]:
    directory = tmp_path_factory.mktemp("console")
    town = start(directory)
    try:
        yield town
    finally:
        town.close()


def chrome(size: tuple[int, int]) -> webdriver.Chrome:
    binary, driver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    assert driver is not None, "chromedriver is missing: ./dev installs Debian's chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--window-size={size[0]},{size[1]}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    viewport(browser, *size)
    return browser


def viewport(browser: webdriver.Chrome, width: int, height: int) -> None:
    """The page's viewport exactly `width` x `height` CSS pixels, a phone's (mobile, touch) below 500: headless
    chromium keeps a window at least 500 wide, so a phone is emulated as its devtools do."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
    )


@pytest.fixture(scope="module")
def phone() -> Iterator[webdriver.Chrome]:
    browser = chrome(PHONE)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def desk() -> Iterator[webdriver.Chrome]:
    browser = chrome(DESK)
    try:
        yield browser
    finally:
        browser.quit()
