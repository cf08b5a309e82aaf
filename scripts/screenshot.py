"""The README's screenshot: the dashboard with five models, a pinned pixel and whole-image maps.

    python scripts/screenshot.py [--size 96] [--out docs/screenshot.png]

Computes the dense Jacobians of a bundled sample pair (resized to --size, so that this takes a
minute or two on a CPU) into a fresh service cache, starts `python app.py` on that cache, opens
the pair by its link in headless Chromium, waits until every image is drawn and saves the whole
page.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import MAIN_MODELS, sample_pair  # noqa: E402
from bench_browser_hover import browser, start_server  # noqa: E402

from fusion.service import SaliencyService  # noqa: E402


def wait_for_images(driver, selector: str, count: int, timeout: float = 300) -> None:
    script = (f"return [...document.querySelectorAll(\"{selector}\")]"
              ".filter(i => (i.getAttribute('src') || '').startsWith('data:image/png')).length")
    end = time.time() + timeout
    while driver.execute_script(script) < count:
        if time.time() > end:
            raise RuntimeError(f"fewer than {count} images {selector} were drawn")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--pixel", default="38,58", help="row,col to pin")
    parser.add_argument("--port", type=int, default=8072)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        service = SaliencyService(cache_dir=cache)
        pair_id = service.put_pair(*sample_pair(args.size))
        for name in MAIN_MODELS:
            start = time.perf_counter()
            service.dense(name, pair_id)
            print(f"{name}: whole-image Jacobian in {time.perf_counter() - start:.1f} s", flush=True)
        server = start_server(args.port, ",".join(MAIN_MODELS), cache)
        driver = browser()
        try:
            driver.set_window_size(1700, 1300)
            driver.get(f"http://127.0.0.1:{args.port}/?pair={pair_id}&models={','.join(MAIN_MODELS)}"
                       f"&px={args.pixel}")
            wait_for_images(driver, "img[id*='img-jacobian']", 2 * len(MAIN_MODELS))
            wait_for_images(driver, "img[id*='img-dense']", 4 * len(MAIN_MODELS))
            time.sleep(3)  # plots and histograms settle
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1700, height)
            time.sleep(2)
            driver.save_screenshot(args.out)
            print(f"wrote {args.out} (1700 x {height})")
        finally:
            driver.quit()
            server.terminate()


if __name__ == "__main__":
    main()
