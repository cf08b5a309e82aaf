"""Sign-in, /healthz and the URL prefix against a real server process on loopback (``python app.py``).

One server for the module: FUSION_AUTH_FILE (bcrypt cost 4, to keep the tests fast), FUSION_URL_PREFIX
/fusion/, a throw-away cache, hovers in threads. The browser test needs ``pytest --headless``.
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from browser_helpers import wait

from fusion import users

ROOT = Path(__file__).resolve().parent.parent
FAST = 4
PASSWORD = "alice's password"
PREFIX = "/fusion/"
# pin_badge: one small server-side callback (Output fs-pin-badge.children, Input fs-pinned.data)
CALLBACK = {"output": "fs-pin-badge.children", "outputs": {"id": "fs-pin-badge", "property": "children"},
            "inputs": [{"id": "fs-pinned", "property": "data", "value": {"row": 3, "col": 4}}],
            "changedPropIds": ["fs-pinned.data"], "state": []}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` with sign-in and the /fusion/ prefix; stopped (its whole process group) at the end."""
    root = tmp_path_factory.mktemp("signin")
    path = root / "users"
    users.add_user(path, "alice", PASSWORD, rounds=FAST)
    port = free_port()
    env = {**os.environ, "FUSION_AUTH_FILE": str(path), "FUSION_CACHE_DIR": str(root / "cache"),
           "FUSION_HOVER_PROCESSES": "0", "FUSION_URL_PREFIX": PREFIX, "FUSION_DASH_HOST": "127.0.0.1",
           "FUSION_DASH_PORT": str(port), "FUSION_DASH_MODELS": "weighted-average", "FUSION_DASH_DEBUG": "0"}
    env.pop("REDIS_URL", None)
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > end:
                raise AssertionError(f"the server did not answer /healthz within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield SimpleNamespace(url=url, users=path, log=log)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ALICE = basic("alice", PASSWORD)


def call(server, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=headers, timeout=30, allow_redirects=False, **kwargs)


def assert_refused(response: requests.Response):
    assert response.status_code == 401, (response.request.method, response.url, response.status_code)
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="fusion-saliency"')
    if response.request.method != "HEAD":
        assert "Sign-in required" in response.text  # a message, not a page of the app


def routes(server) -> list[tuple[str, str, dict]]:
    """(method, path, request options) of everything the page itself loads or calls, signed in or not."""
    from dashboard import backend
    from dashboard.config import Config

    page = call(server, "GET", PREFIX, ALICE).text
    suite = re.search(r'src="(/fusion/_dash-component-suites/[^"]+\.js[^"]*)"', page).group(1)
    pair = backend.default_pair_key(Config())
    return [("GET", PREFIX, {}), ("GET", PREFIX + "_dash-layout", {}), ("GET", PREFIX + "_dash-dependencies", {}),
            ("POST", PREFIX + "_dash-update-component", {"json": CALLBACK}),
            ("GET", PREFIX + "assets/fs_hover.js", {}), ("GET", PREFIX + "assets/fs_style.css", {}),
            ("GET", suite, {}), ("GET", PREFIX + "_favicon.ico", {}),
            ("GET", PREFIX + "fs-api/pixel", {"params": {"pair": pair, "models": "weighted-average",
                                                         "row": 3, "col": 4}})]


def test_every_route_needs_sign_in_and_works_with_it(server):
    wrong = [{}, basic("alice", "not the password"), basic("mallory", PASSWORD), basic("alice", ""),
             basic("", PASSWORD), basic("alice", PASSWORD + "x" * 80), {"Authorization": "Bearer abc"},
             {"Authorization": "Basic !!!"}, {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
             {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()}, {"Authorization": "Basic"}]
    for method, path, options in routes(server):
        for headers in wrong:
            assert_refused(call(server, method, path, headers, **options))
        right = call(server, method, path, ALICE, **options)
        assert right.status_code == 200, (method, path, right.status_code, right.text[:300])
    # what the signed-in answers hold
    page = call(server, "GET", PREFIX, ALICE).text
    config = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(config)["requests_pathname_prefix"] == PREFIX  # what fs_hover.js asks the hovers under
    method, path, options = routes(server)[-1]
    hover = call(server, method, path, ALICE, **options).json()
    assert (hover["row"], hover["col"]) == (3, 4) and hover["models"]["weighted-average"]["dmri"] == 0.5
    update = call(server, "POST", PREFIX + "_dash-update-component", ALICE, json=CALLBACK).json()
    assert "3" in str(update["response"]["fs-pin-badge"]["children"])
    # malformed callback bodies sent before signing in are refused before they are read
    for body in ({}, [], "x"):
        assert_refused(call(server, "POST", PREFIX + "_dash-update-component", json=body))


def test_anything_else_the_app_serves_needs_sign_in(server):
    """Every URL rule of the app (each of its methods), with placeholders filled in, and paths it does not serve."""
    import app as app_module
    from dashboard.config import Config

    rules = app_module.create_app(Config(auth_file=str(server.users), url_prefix=PREFIX, cache_dir=str(
        server.log.parent / "cache-inprocess"), hover_processes=0)).server.url_map.iter_rules()
    seen = set()
    for rule in rules:
        path = re.sub(r"<(?:[a-z]+:)?path>|<[^>]+>", "x", rule.rule)
        for method in sorted(rule.methods - {"OPTIONS"}):
            response = call(server, method, path)
            if rule.endpoint == "fusion_healthz" and method in ("GET", "HEAD"):
                assert response.status_code == 200
            else:
                assert_refused(response)
            seen.add(rule.rule)
    assert {"/fusion/fs-api/pixel", "/fusion/_dash-update-component", "/fusion/assets/<path:filename>",
            "/healthz", "/fusion/healthz"} <= seen
    for path in ("/", "/fs-api/pixel", "/_dash-layout", "/fusion", "/fusion/../healthz/x", "/nothing/here"):
        assert_refused(call(server, "GET", path))
    assert_refused(call(server, "OPTIONS", PREFIX))
    assert_refused(call(server, "POST", "/healthz"))


def test_healthz_answers_without_sign_in_and_tells_nothing_private(server):
    for path in ("/healthz", PREFIX + "healthz"):
        response = call(server, "GET", path)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body == {"status": "ok", "models": body["models"], "sign_in": True, "jobs": "local",
                        "url_prefix": PREFIX}
        assert body["models"] >= 5
        assert "alice" not in response.text and str(server.users) not in response.text


def test_users_added_or_removed_while_the_server_runs_count_at_once(server):
    layout = PREFIX + "_dash-layout"
    assert_refused(call(server, "GET", layout, basic("bob", "bob's password")))
    users.add_user(server.users, "bob", "bob's password", rounds=FAST)
    assert call(server, "GET", layout, basic("bob", "bob's password")).status_code == 200
    users.add_user(server.users, "bob", "a new password", rounds=FAST)
    assert_refused(call(server, "GET", layout, basic("bob", "bob's password")))
    assert call(server, "GET", layout, basic("bob", "a new password")).status_code == 200
    users.remove_user(server.users, "bob")
    assert_refused(call(server, "GET", layout, basic("bob", "a new password")))
    assert call(server, "GET", layout, ALICE).status_code == 200

    # a broken users file refuses everyone with a message (not a 500), and works again once fixed
    good = server.users.read_bytes()
    broken = server.users.with_name("users.broken")
    broken.write_text("alice:not-a-hash\n")
    os.replace(broken, server.users)
    try:
        response = call(server, "GET", layout, ALICE)
        assert response.status_code == 503 and "users file" in response.json()["error"]
        assert "not-a-hash" not in response.text
        health = call(server, "GET", "/healthz")  # the lab's monitoring learns that nobody can sign in
        assert health.status_code == 503 and health.json()["status"] == "error"
        assert "users file" in health.json()["problem"] and str(server.users) not in health.text
    finally:
        broken.write_bytes(good)
        os.replace(broken, server.users)
    assert call(server, "GET", layout, ALICE).status_code == 200
    assert call(server, "GET", "/healthz").json()["status"] == "ok"


def test_checks_are_remembered_per_password_and_forgotten_when_the_file_changes(tmp_path, monkeypatch):
    from dashboard import auth

    path = tmp_path / "users"
    users.add_user(path, "alice", "pw", rounds=FAST)
    checker = auth.UsersFile(str(path))
    calls = []
    real = users.check_password

    def counted(hashed, password):
        calls.append(password)
        time.sleep(0.2)  # as slow as a real check: concurrent requests must wait for one, not run their own
        return real(hashed, password)
    monkeypatch.setattr(users, "check_password", counted)

    results = []
    threads = [threading.Thread(target=lambda: results.append(checker.check("alice", "pw"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8 and calls == ["pw"]
    assert [checker.check("alice", "wrong") for _ in range(3)] == [False] * 3 and calls == ["pw", "wrong"]
    assert not checker.check("nobody", "pw") and calls[-1] == "pw"  # an unknown user costs a check too
    users.add_user(path, "bob", "pw2", rounds=FAST)  # any change of the file: everything is checked again
    assert checker.check("alice", "pw") and checker.check("bob", "pw2") and len(calls) == 5
    small = auth.UsersFile(str(path), remembered=2)
    for password in ("a", "b", "c", "pw"):
        small.check("alice", password)
    assert len(small) == 2  # bounded


@pytest.mark.browser
def test_page_under_the_prefix_signs_in_hovers_runs_a_job_and_downloads(server, dash_br):
    """Headless Chromium with alice's credentials on every request: the page, its grid, a hover, a
    background job and a download."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    driver = dash_br.driver
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": ALICE})
    driver.get(server.url + PREFIX)
    fused = '[id*=\'"type":"img-fused"\'][id*=\'"model":"weighted-average"\']'
    dash_br.wait_for_element(fused, timeout=90)

    def until(condition, what, timeout=60):
        wait(condition, timeout, what)

    until(lambda: (dash_br.find_element(fused).get_attribute("src") or "").startswith("data:image/png"),
          "the fused image")
    assert driver.execute_script("return window.__fsState.base") == PREFIX

    def readout():
        match = re.search(r"row (\d+), col (\d+)", dash_br.find_element("#fs-readout-head").text)
        return match and (int(match.group(1)), int(match.group(2)))

    def hovered_to(fx, fy):
        element = dash_br.find_element(fused)
        x, y = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                     "return [r.left + arguments[1] * r.width, r.top + arguments[2] * r.height]",
                                     element, fx, fy)
        actions = ActionBuilder(driver, duration=0)
        actions.pointer_action.move_to_location(int(x), int(y))
        actions.perform()
        row, col = readout()
        return abs(row - fy * 256) <= 8 and abs(col - fx * 256) <= 8

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", dash_br.find_element(fused))
    until(lambda: hovered_to(0.25, 0.7), "the readout to follow a hover to (0.7, 0.25) of the fused image")
    assert "0.5" in dash_br.find_element(".fs-readout-table").text  # dF/dMRI of the weighted average

    # a background job (its progress is polled through Dash under the prefix), then a download
    def click(selector):
        element = dash_br.find_element(selector)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        driver.execute_script("arguments[0].click()", element)
    click("#fs-dense-run")
    dense = '[id*=\'"type":"img-dense"\']'
    until(lambda: len([e for e in dash_br.find_elements(dense)
                       if (e.get_attribute("src") or "").startswith("data:image/png")]) == 4,
          "the whole-image maps of the background job", timeout=120)
    until(lambda: "brain mask" in dash_br.find_element("#fs-hist").text, "the statistics")
    click("#fs-dl-csv")
    csv = Path(dash_br.download_path) / "mri-share-statistics.csv"
    until(lambda: csv.exists() and not list(csv.parent.glob("*.crdownload")), "the statistics download")
    assert csv.read_text().startswith("model,region,pixels,mean_share,mri_dominated")
    severe = [e for e in dash_br.get_logs() if e["level"] == "SEVERE"]
    assert not severe, severe
