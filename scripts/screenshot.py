"""The README's screenshot: the dashboard with five models, a pinned pixel and whole-image maps.

    python scripts/screenshot.py [--sample head-axial-090] [--size 96] [--pixel 38,58] [--out docs/screenshot.png]

Computes the dense Jacobians of a bundled sample pair (by default the one the page opens on, a
whole head with a colour PET; resized to --size, its colour included, so that this takes a
minute or two on a CPU) into a fresh service cache, starts `python app.py` on that cache, opens
the pair by its link in headless Chromium, waits until every image is drawn and saves the whole
page.
"""
from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
from _common import MAIN_MODELS  # noqa: E402
from bench_browser_hover import browser, start_server  # noqa: E402
from PIL import Image  # noqa: E402

from dashboard.backend import DEFAULT_SAMPLE  # noqa: E402
from fusion.data import load_sample  # noqa: E402
from fusion.io import Pair, check_colour_pair  # noqa: E402
from fusion.serving import SaliencyService  # noqa: E402


def resized_sample(name: str, size: int) -> Pair:
    """A bundled pair resized to (size, size) (bilinear): MRI, PET's Y and, for a colour PET, its Cb/Cr."""
    pair = load_sample(name)

    def resized(x: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(np.asarray(x, np.float32)).resize((size, size), Image.BILINEAR))

    chroma = None if pair.pet_chroma is None else np.stack([resized(pair.pet_chroma[..., k]) for k in (0, 1)], -1)
    return check_colour_pair(resized(pair.mri), resized(pair.pet), chroma, pair.pet_range)


def wait_for_images(driver, selector: str, count: int, timeout: float = 300) -> None:
    script = (f"return [...document.querySelectorAll(\"{selector}\")]"
              ".filter(i => (i.getAttribute('src') || '').startsWith('data:image/png')).length")
    end = time.time() + timeout
    while driver.execute_script(script) < count:
        if time.time() > end:
            raise RuntimeError(f"fewer than {count} images {selector} were drawn")
        time.sleep(0.3)


def full_page_png(driver, width: int, out: Path) -> int:
    """Save the whole page, however tall, as a PNG ``width`` pixels wide; returns its height.

    A window as tall as the page is not enough: Chromium caps the window's height (the README's
    earlier screenshot lost the bottom of its statistics table), so the viewport is set through
    the DevTools protocol instead.
    """
    height = 0
    for _ in range(5):  # until the page's height settles at the new viewport
        new = driver.execute_script("return document.documentElement.scrollHeight")
        if new == height:
            break
        height = new
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(2)
    driver.execute_script("document.documentElement.style.overflow = 'hidden'")  # no scroll bar in the picture
    time.sleep(1)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default=DEFAULT_SAMPLE, help="a bundled pair (default: the page's first)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--pixel", default="38,58", help="row,col to pin")
    parser.add_argument("--port", type=int, default=8072)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        service = SaliencyService(cache_dir=cache)
        pair = resized_sample(args.sample, args.size)
        pair_id = service.put_pair(pair.mri, pair.pet, pet_chroma=pair.pet_chroma, pet_range=pair.pet_range)
        for name in MAIN_MODELS:
            start = time.perf_counter()
            service.dense(name, pair_id)
            print(f"{name}: whole-image Jacobian in {time.perf_counter() - start:.1f} s", flush=True)
        server = start_server(args.port, ",".join(MAIN_MODELS), cache, Path(cache) / "app.log")
        driver = browser()
        try:
            driver.set_window_size(1700, 1300)
            driver.get(f"http://127.0.0.1:{args.port}/?pair={pair_id}&models={','.join(MAIN_MODELS)}"
                       f"&px={args.pixel}")
            wait_for_images(driver, "img[id*='img-jacobian']", 2 * len(MAIN_MODELS))
            wait_for_images(driver, "img[id*='img-dense']", 4 * len(MAIN_MODELS))
            time.sleep(3)  # plots and histograms settle
            height = full_page_png(driver, 1700, Path(args.out))
            print(f"wrote {args.out} (1700 x {height})")
        finally:
            driver.quit()
            server.terminate()


if __name__ == "__main__":
    main()
