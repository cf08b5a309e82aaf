"""Shared pytest setup: Chrome options for the dash_duo browser tests (headless Chromium from Debian)."""
import os
import shutil


def pytest_setup_options():
    """Options for dash.testing's Chrome webdriver (chromedriver is found on PATH)."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for arg in ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1300"):
        options.add_argument(arg)
    binary = os.environ.get("DASH_TEST_CHROMEPATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    return options
