"""Shared pytest setup for the dash_duo browser tests: Chrome options (headless Chromium from Debian), a
service cache per test module and ``start``, which starts the dashboard."""
import os
import shutil

import pytest
from browser_helpers import wait_images

from dashboard.config import Config


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


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One service cache for these tests: models are probed once, as on a real server."""
    return tmp_path_factory.mktemp("fusion-cache")


@pytest.fixture
def start(dash_duo, cache_dir):
    """Start the dashboard with ``models`` selected and wait until the fused images show."""
    import torch

    import app as app_module

    threads = torch.get_num_threads()  # the app sets its own; give the other tests theirs back

    def run(models=("weighted-average", "funfusean"), path=""):
        config = Config(cache_dir=str(cache_dir), default_models=tuple(models), max_scatter_points=2000)
        dash_app = app_module.create_app(config)
        dash_duo.start_server(dash_app)
        if path:
            dash_duo.driver.get(dash_duo.server_url + path)
        wait_images(dash_duo, "img-fused", len(models))
        return dash_app

    yield run
    torch.set_num_threads(threads)
