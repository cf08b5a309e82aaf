"""Hover latency of the dashboard in a real headless Chromium: mouse event -> every panel updated.

    python benchmarks/bench_browser_hover.py                 # starts `python app.py`, 5 models, 60 hovers
    python benchmarks/bench_browser_hover.py --url http://127.0.0.1:8050/ --n 100
    python benchmarks/bench_browser_hover.py --during-compute    # idle, then while Compute runs all models

The page shows its default pair (``dashboard.backend.default_pair_key``: head-axial-090, a
colour PET; axial-095 before the head samples; both 256 x 256). One trial: the mouse jumps (one
W3C pointer move, no intermediate events) to a random pixel of a random model's fused image.
The clock starts at that mousemove event's timestamp (recorded by assets/fs_hover.js) and stops
when the readout shows the new pixel and every Jacobian image of every model has decoded its new
PNG (the crosshairs on all images are drawn in the event handler itself, so they are done long
before). Prints p50 / p95 / max in ms. ``--during-compute``: the same hovers once more after pressing
Compute (every shown model's whole-image maps, fanned out over the cores at low priority), measured
while the job's progress shows; both phases are printed, from the same run.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.common.actions.action_builder import ActionBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.ids import HOVER_ROUTE  # noqa: E402

DEFAULT_MODELS = "weighted-average,funfusean,masknet,deepfuse,deeppedestrian"

ARM = """
window.__fsBenchEnd = null;
performance.clearResourceTimings();  // the buffer holds 250 entries; a Compute's polls fill it
const readout = document.getElementById('fs-readout');
const obs = new MutationObserver(() => {
  const p = window.__fsState.pixel;
  if (!p || !readout.textContent.includes(`row ${p.row}, col ${p.col})`)) { return; }
  obs.disconnect();
  const imgs = [...document.querySelectorAll("img[id*='img-jacobian']")];
  Promise.all(imgs.map(i => i.decode().catch(() => null))).then(() => { window.__fsBenchEnd = performance.now(); });
});
obs.observe(readout, {childList: true, subtree: true, characterData: true});
"""


def start_server(port: int, models: str, cache: str, log: Path) -> subprocess.Popen:
    """``python app.py`` with its output in ``log``: a pipe nobody reads fills up (64 KiB) and then
    blocks the app's next log line, which stops every request (it did, during a Compute)."""
    env = dict(os.environ, FUSION_DASH_PORT=str(port), FUSION_DASH_MODELS=models, FUSION_CACHE_DIR=cache)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the app exited: " + log.read_text(errors="replace")[-2000:]) from None
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the app did not answer on {url}")


def browser() -> webdriver.Chrome:
    options = Options()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1300",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(arg)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    return webdriver.Chrome(options=options)


def wait_ready(driver, n_models: int, timeout: float = 900):
    end = time.time() + timeout
    script = ("return [...document.querySelectorAll(\"img[id*='img-jacobian']\")]"
              ".filter(i => (i.getAttribute('src') || '').startsWith('data:image/png')).length")
    while time.time() < end:
        if driver.execute_script(script) == 2 * n_models:
            return
        time.sleep(0.2)
    raise RuntimeError("the page never showed every model's Jacobians")


def move_to(driver, element, fx: float, fy: float) -> None:
    """One pointer move (a single mousemove event) to the fraction (fx, fy) of ``element``."""
    x, y = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.left + arguments[1] * r.width, r.top + arguments[2] * r.height]",
                                 element, fx, fy)
    actions = ActionBuilder(driver, duration=0)
    actions.pointer_action.move_to_location(int(x), int(y))
    actions.perform()


SPLIT = """
const t0 = window.__fsHoverT0;
const r = performance.getEntriesByType('resource').filter(e => e.name.includes(arguments[0]) && e.startTime >= t0);
if (!r.length) { return null; }
const e = r[r.length - 1];
return [e.startTime - t0, e.responseEnd - e.startTime, window.__fsBenchEnd - e.responseEnd];
"""


def trial(driver, target, fx: float, fy: float, route: str, timeout: float = 10.0) -> tuple[float, list | None]:
    """One hover: (ms from the mousemove to every panel updated, [ms before the request is sent,
    ms of the request itself, ms from its answer to the images decoded] or None)."""
    driver.execute_script(ARM)
    move_to(driver, target, fx, fy)
    end = time.time() + timeout
    while time.time() < end:
        done = driver.execute_script("return window.__fsBenchEnd === null ? null : "
                                     "window.__fsBenchEnd - window.__fsHoverT0")
        if done is not None:
            return float(done), driver.execute_script(SPLIT, route)
        time.sleep(0.01)
    raise RuntimeError("a hover was not answered within the timeout")


LONG_FRAMES = """
if (!window.__fsLong) {
  window.__fsLong = [];
  new PerformanceObserver(l => { for (const e of l.getEntries()) {
    window.__fsLong.push([e.duration, e.scripts.map(x => [x.invoker
      + (x.sourceFunctionName ? ' ' + x.sourceFunctionName : '') + ' (' + (x.sourceURL || '').split('/').pop() + ')',
      x.duration])]);
  } }).observe({type: 'long-animation-frame'});
}
return window.__fsLong.splice(0);
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def measure(driver, targets, rng, args) -> tuple[list[float], list[list[float]], list, float]:
    """``args.warmup`` hovers, then ``args.n`` measured ones: (ms each, their three parts, the page's long
    animation frames while they ran (over 50 ms: [ms, [[what ran, ms], ...]] each), and their seconds)."""
    route = HOVER_ROUTE
    latencies, parts = [], []
    for k in range(args.warmup + args.n):
        if k == args.warmup:
            driver.execute_script(LONG_FRAMES)
            begun = time.monotonic()
        ms, split = trial(driver, rng.choice(targets), rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), route)
        if k >= args.warmup:
            latencies.append(ms)
            if split:
                parts.append(split)
        time.sleep(args.pause)
    return latencies, parts, driver.execute_script(LONG_FRAMES), time.monotonic() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an app already running (else `python app.py` is started)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated models (when starting the app)")
    parser.add_argument("--n", type=int, default=60, help="measured hovers")
    parser.add_argument("--warmup", type=int, default=5, help="hovers not measured")
    parser.add_argument("--port", type=int, default=8071)
    parser.add_argument("--pause", type=float, default=0.15, help="seconds between hovers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--during-compute", action="store_true",
                        help="measure again while a Compute of every shown model runs")
    parser.add_argument("--cache", help="service cache to use when starting the app (default: a fresh one; a "
                                        "warm one skips the first-visit probing of every model)")
    args = parser.parse_args()

    proc, cache = None, None
    url = args.url
    if url is None:
        cache = args.cache or tempfile.mkdtemp(prefix="fusion-bench-")
        log = Path(tempfile.mkstemp(prefix="fusion-bench-app-", suffix=".log")[1])
        print(f"app log: {log}")
        proc = start_server(args.port, args.models, cache, log)
        url = f"http://127.0.0.1:{args.port}/"
    driver = browser()
    try:
        driver.get(url)
        driver.execute_script("window.scrollTo(0, 0)")
        targets_script = "return document.querySelectorAll(\"img[id*='img-fused']\").length"
        n_models = 0
        for _ in range(600):
            n_models = driver.execute_script(targets_script)
            if n_models:
                break
            time.sleep(0.2)
        wait_ready(driver, n_models)
        targets = driver.find_elements("css selector", "img[id*='img-fused']")
        rng = random.Random(args.seed)
        phases = [("idle", measure(driver, targets, rng, args))]
        if args.during_compute:
            driver.execute_script("document.getElementById('fs-dense-run').click()")
            end = time.time() + 300
            while not driver.find_elements("css selector", "[id*='status'] .progress"):
                if time.time() > end:
                    raise RuntimeError("the Compute job never showed progress")
                time.sleep(0.2)
            phases.append(("during Compute", measure(driver, targets, rng, args)))
            still = driver.find_elements("css selector", "[id*='status'] .progress")
            print(f"(the Compute was {'still running' if still else 'finished'} at the end of the second phase)")
        print(f"hover -> all panels updated, {n_models} models, {args.n} hovers per phase, headless Chromium")
        for name, (latencies, parts, long_frames, seconds) in phases:
            print(f"  {name:15s} p50 {percentile(latencies, 0.5):6.1f} ms   p95 {percentile(latencies, 0.95):6.1f} ms"
                  f"   mean {statistics.fmean(latencies):6.1f} ms   max {max(latencies):6.1f} ms")
            for k, part in enumerate(("before the request", "the request", "answer -> decoded")):
                values = [split[k] for split in parts]
                if values:
                    print(f"    {part:20s} p50 {percentile(values, 0.5):6.1f} ms   p95 "
                          f"{percentile(values, 0.95):6.1f} ms   max {max(values):6.1f} ms")
            busy = sum(ms for ms, _ in long_frames)
            print(f"    frames over 50 ms: {len(long_frames)} in {seconds:.0f} s, {busy:.0f} ms in all, longest "
                  f"{max((ms for ms, _ in long_frames), default=0):.0f} ms; in them:", end="")
            spent = collections.Counter()
            for _, scripts in long_frames:
                for invoker, ms in scripts:
                    spent[invoker] += ms
            print("".join(f" {invoker} {ms:.0f} ms;" for invoker, ms in spent.most_common(4)) or " -")
    finally:
        driver.quit()
        if proc is not None:  # the app and its job processes (a running Compute outlives the app)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
            time.sleep(1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if cache and not args.cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
