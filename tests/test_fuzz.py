"""Fuzz: hundreds of malformed requests against a real server process on loopback (issue 11).

One gunicorn server (two workers, FUSION_HOVER_PROCESSES=0, a temporary cache, uploads up to
1 MB) gets malformed hover requests, callback bodies and uploads (truncated files and a bomb
in every accepted format, oversized bodies, wrong types, long and path-like names). Every answer
must be a 4xx or a 2xx, within 2 s, without a traceback; afterwards the server's memory is back
near its level and a good hover still works. Randomness is seeded.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import bomb_files
import numpy as np
import psutil
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
UPLOAD_MB = 1
SLOWEST_S = 2.0
#: Growth of the server's resident memory (master and workers) allowed after the fuzz run.
RSS_GROWTH_MB = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, process: subprocess.Popen):
        self.port, self.process, self.answers = port, process, []

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             length: int | None = None) -> tuple[int, bytes]:
        """One request on a fresh connection; records (what, status, seconds, body)."""
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            heads = {"Connection": "close", **(headers or {})}
            if body is not None or length is not None:
                heads["Content-Length"] = str(len(body or b"") if length is None else length)
            for k, v in heads.items():
                conn.putheader(k, v)
            conn.endheaders()
            try:
                if body:
                    conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (413) before reading the whole body
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
            conn.close()
        self.answers.append((f"{method} {path[:120]}", status, time.perf_counter() - start, data[:300]))
        return status, data

    def get(self, path: str) -> tuple[int, bytes]:
        return self.send("GET", path)

    def post_json(self, path: str, payload, raw: bytes | None = None) -> tuple[int, bytes]:
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.send("POST", path, body, {"Content-Type": "application/json"})

    def rss_mb(self) -> float:
        parent = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    conf = tmp / "gunicorn_fuzz.py"
    conf.write_text(f"bind = '127.0.0.1:{port}'\nworkers = 2\nthreads = 4\ntimeout = 60\n"
                    "control_socket_disable = True\n")
    env = {**os.environ, "FUSION_CACHE_DIR": str(tmp / "cache"), "FUSION_HOVER_PROCESSES": "0",
           "FUSION_MAX_UPLOAD_MB": str(UPLOAD_MB), "FUSION_DASH_DEBUG": "0", "OMP_NUM_THREADS": "1"}
    for key in ("FUSION_AUTH_FILE", "FUSION_URL_PREFIX", "REDIS_URL"):
        env.pop(key, None)
    log = open(tmp / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(conf), "app:server"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(port, process)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp / "server.log").read_text()[-3000:]
            try:
                if srv.get("/healthz")[0] == 200 or srv.get("/_dash-layout")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        srv.answers.clear()
        srv.log = tmp / "server.log"
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)
        log.close()


# ------------------------------------------------------------------ request builders
def callbacks_of(server) -> list[dict]:
    status, data = server.get("/_dash-dependencies")
    assert status == 200
    return json.loads(data)


def find(deps: list[dict], output_part: str) -> dict:
    return next(d for d in deps if output_part in d["output"])


def outputs_of(dep: dict) -> list[dict]:
    parts = dep["output"].strip(".").split("...")
    out = []
    for part in parts:
        component, prop = part.rsplit(".", 1)
        out.append({"id": json.loads(component) if component.startswith("{") else component,
                    "property": prop.split("@")[0]})
    return out


def body_for(dep: dict, values: dict, changed: str | None = None) -> dict:
    """A renderer-like body for callback ``dep``: values by "id.property" (missing ones None)."""
    def items(group):
        return [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                for i in group]
    first = dep["inputs"][0]
    return {"output": dep["output"], "outputs": outputs_of(dep), "inputs": items(dep["inputs"]),
            "state": items(dep.get("state", [])), "changedPropIds": [changed or f"{first['id']}.{first['property']}"]}


def data_uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def good_files() -> dict[str, bytes]:
    """One valid 32 x 32 image per accepted format (for truncation)."""
    import nibabel as nib

    grey = (np.add.outer(np.arange(32), np.arange(32)) * 4 % 256).astype(np.uint8)
    out = {}
    for fmt, suffix in (("PNG", "png"), ("GIF", "gif"), ("TIFF", "tif"), ("BMP", "bmp"), ("JPEG", "jpg")):
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format=fmt)
        out[suffix] = buffer.getvalue()
    buffer = io.BytesIO()
    np.save(buffer, grey.astype(np.float32))
    out["npy"] = buffer.getvalue()
    image = nib.Nifti1Image(np.stack([grey] * 3, -1).astype(np.float32), np.eye(4))
    out["nii"] = image.to_bytes()
    import gzip
    out["nii.gz"] = gzip.compress(out["nii"])
    return out


# ------------------------------------------------------------------ the test
def test_fuzz_server_with_malformed_requests(server):
    from dashboard.backend import default_pair_key
    from dashboard.config import from_env

    rng = random.Random(11)
    deps = callbacks_of(server)
    upload = find(deps, "fs-upload-msg.children...fs-pair-select.value")
    open_h5 = find(deps, "fs-opened.data")
    choose = find(deps, "fs-pair.data...fs-pair-msg.children")
    grid = find(deps, "fs-grid.children")
    sync = find(deps, "fs-url.search")
    inputs = find(deps, "fs-input-mri.src")
    models = ["weighted-average", "funfusean", "masknet", "deepfuse", "deeppedestrian"]
    pair_key = default_pair_key(from_env())  # the pair the server prepares at start
    route = "/_dash-update-component"

    # warm up: the pair, a hover, the layout; then the memory level
    status, data = server.post_json(route, body_for(choose, {"fs-pair-select.value": pair_key}))
    assert status == 200, data
    pair = json.loads(data)["response"]["fs-pair"]["data"]
    good_hover = f"/fs-api/pixel?pair={pair['id']}&models=weighted-average&row=10&col=20"
    for _ in range(3):
        assert server.get(good_hover)[0] == 200
    server.post_json(route, body_for(upload, {"fs-upload-mri.contents": data_uri(good_files()["png"]),
                                              "fs-upload-mri.filename": "ok.png"}))
    card = find(deps, "fs-card-modal.is_open")  # a callback that raises PreventUpdate: Dash's 204 is kept
    status, data = server.post_json(route, {**body_for(card, {}), "inputs": [[]], "changedPropIds": []})
    assert status == 204, data
    rss_before = server.rss_mb()
    server.answers.clear()

    # 1. hover parameters
    bad_values = ["", "x", "1.5", "-", "1e9", "9" * 40, "0x10", " 1", "١", "nan", "%00", "[1]", "'; drop", "\u202e1"]
    pair_keys = ["sample:../../etc/passwd", "sample:..", "sample:/etc/passwd", "../../etc/passwd", "/etc/passwd",
                 "sample:axial-095/../axial-095", "sample:" + "a" * 300, "f" * 32, "F" * 32, "sample:", "sample:%2e%2e",
                 "C:\\windows", "sample:axial-095\x00", "\n", pair["id"] + "x"]
    for key in pair_keys:
        server.get("/fs-api/pixel?" + urlencode({"pair": key, "models": "weighted-average", "row": 1, "col": 1}))
    for value in bad_values:
        for name in ("row", "col", "gamma", "jac", "win", "shared", "seq"):
            params = {"pair": pair["id"], "models": "weighted-average", "row": 5, "col": 5, name: value}
            server.get("/fs-api/pixel?" + urlencode(params))
    for params in ({"models": "weighted-average"}, {"pair": pair["id"]}, {"pair": pair["id"], "row": 1},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": ",".join(["weighted-average"] * 3000)},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": ",".join(["weighted-average"] * 40)},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": ",".join(models * 2 + ["x"])},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": "weighted-average,weighted-average,nope"},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": ",".join(f"m{i}" for i in range(100))},
                   {"pair": pair["id"], "row": 1, "col": 1, "models": "../../etc/passwd"},
                   {"pair": pair["id"], "row": 10**8, "col": -10**8, "models": "weighted-average"},
                   {"pair": pair["id"], "row": 1, "col": 1, "extra" * 2000: "1"}):
        server.get("/fs-api/pixel?" + urlencode(params))
    for _ in range(40):  # random garbage in random parameters
        params = {k: "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(0, 30)))
                  for k in rng.sample(["pair", "models", "row", "col", "jac", "win", "gamma", "shared", "seq"], 4)}
        server.get("/fs-api/pixel?" + urlencode(params))
    server.get("/fs-api/pixel?row=1&row=2&col=3&pair=" + quote(pair["id"]))

    # 2. callback bodies
    good = body_for(grid, {"fs-models.value": ["weighted-average"], "fs-window.value": "rf", "fs-pair.data": pair})
    raw = json.dumps(good).encode()
    for cut in sorted(rng.sample(range(1, len(raw)), 25)):
        server.post_json(route, None, raw[:cut])
    wrong = [("fs-models.value", {"a": 1}), ("fs-models.value", ["weighted-average"] * 3000), ("fs-models.value", 7),
             ("fs-models.value", [["x"]]), ("fs-models.value", ["x" * 500]), ("fs-pair.data", "sample:axial-095"),
             ("fs-pair.data", [1, 2]), ("fs-pair.data", {"id": "../../etc", "h": 1, "w": 1, "key": "", "label": ""}),
             ("fs-pair.data", {**pair, "h": "256"}), ("fs-pair.data", {**pair, "h": 10**12}), ("fs-window.value", 3),
             ("fs-pair.data", {**pair, "id": "0" * 32})]
    for key, value in wrong:
        values = {"fs-models.value": ["weighted-average"], "fs-window.value": "rf", "fs-pair.data": pair, key: value}
        server.post_json(route, body_for(grid, values))
    for key, value in [("fs-pinned.data", {"row": "5", "col": "x"}), ("fs-pinned.data", {"row": 1e300}),
                       ("fs-pinned.data", [1, 2]), ("fs-gamma-j.value", "big"), ("fs-shared.value", "yes"),
                       ("fs-pair-select.value", {"x": 1}), ("fs-pair-select.value", "sample:../../etc/passwd"),
                       ("fs-url.search", "?" + "a" * 10000), ("fs-url.search", "?pair=sample:../../etc/passwd"),
                       ("fs-url.search", 5), ("fs-uploads.data", "x"), ("fs-uploads.data", [{"id": 5}])]:
        server.post_json(route, body_for(sync, {key: value}, changed=key))
    for value in ("sample:../../etc/passwd", "sample:..", "/etc/passwd", "x" * 99, 5, ["a"], None):
        status, data = server.post_json(route, body_for(choose, {"fs-pair-select.value": value}))
    for value in (None, 5, "x", {"id": pair["id"]}, {**pair, "id": "f" * 32}):
        server.post_json(route, body_for(inputs, {"fs-pair.data": value}))
    structures = [{}, [], "x", 5, None, {"output": "nope"}, {**good, "output": "..x.y.."}, {**good, "inputs": 5},
                  {**good, "inputs": []}, {**good, "inputs": good["inputs"][:1]}, {**good, "outputs": 5},
                  {**good, "state": {"a": 1}}, {**good, "changedPropIds": 5}, {**good, "changedPropIds": [[1]]},
                  {**good, "inputs": [{"id": "fs-x", "property": "value", "value": 1}] * 3},
                  {**good, "inputs": [5, 6, 7]}, {**good, "inputs": [[good["inputs"][0]] * 3] + good["inputs"][1:]},
                  {k: v for k, v in good.items() if k != "output"}, {**good, "output": ["a"]}]
    for body in structures:
        server.post_json(route, body)
    deep = b"[" * 100_000 + b"]" * 100_000
    for raw_body in (deep, b"{" * 5000, b"\xff\xfe\x00garbage", b"", b"[1" + b",1" * 300_000 + b"]",
                     json.dumps({**good, "outputs": [{"id": "a", "property": "b"}] * 300_000}).encode()):
        server.post_json(route, None, raw_body)
    server.send("POST", route, raw, {"Content-Type": "text/plain"})
    server.send("POST", route, b"", {"Content-Type": "application/json"}, length=10**9)  # a lying length

    # 3. uploads through the upload callbacks: nothing may be stored, the page says why
    refusals = []

    def send_upload(contents, name, slot="mri", refused=True):
        values = {f"fs-upload-{slot}.contents": contents, f"fs-upload-{slot}.filename": name}
        status, data = server.post_json(route, body_for(upload, values, changed=f"fs-upload-{slot}.contents"))
        refusals.append((name, status, data) if refused else (name, status, b'{"response": {}}'))
        assert status == 200 and b'"fs-uploads"' not in data, (name, status, data[:300])  # nothing stored

    for name, build in bomb_files.IMAGE_BOMBS.values():
        for slot in ("mri", "pet"):
            send_upload(data_uri(build()), name, slot)
    for suffix, data in good_files().items():
        for cut in (1, 8, len(data) // 3, len(data) // 2):
            send_upload(data_uri(data[:cut]), f"cut.{suffix}", rng.choice(["mri", "pet"]))
        send_upload(data_uri(data[:-5]), f"cut.{suffix}", refused=False)  # a cut trailer may still decode
    for contents in (["data:a;base64,AAAA"], {"a": 1}, 5, 1.5, True, "not a data uri", "data:x;base64,@@@@",
                     "data:image/png;base64," + "A" * 5, "data:image/png,rawtext", "data:;base64,",
                     data_uri(bytes(rng.randrange(256) for _ in range(999)), "image/png")):
        send_upload(contents, "x.png")
    png = data_uri(good_files()["png"])
    for name in ("a" * 5000, "../../etc/passwd", "/etc/passwd", "..", "C:\\x\\y.png", "x\x00.png", "x\n.png",
                 "\u202egnp.exe", 5, ["a.png"], {"n": 1}, "", " "):
        send_upload(png, name)
    h5 = {"map bomb": bomb_files.h5_map_bomb(), "chunk bomb": bomb_files.h5_chunk_bomb(), "text": b"not hdf5" * 20,
          "cut": bomb_files.h5_map_bomb(64)[:3000]}
    for label, data in h5.items():
        values = {"fs-upload-h5.contents": data_uri(data), "fs-upload-h5.filename": f"{label}.h5"}
        status, answer = server.post_json(route, body_for(open_h5, values))
        refusals.append((label, status, answer))
    band = bomb_files.h5_band_bomb()  # opens without its band (2 x 240 MB of zeros, never read)
    status, answer = server.post_json(route, body_for(open_h5, {"fs-upload-h5.contents": data_uri(band),
                                                                "fs-upload-h5.filename": "band.h5"}))
    assert status == 200 and b"fs-upload-error" not in answer, answer[:300]
    for contents in ([1, 2], {"x": 1}, 3, "data:;base64,%%%"):
        status, answer = server.post_json(route, body_for(open_h5, {"fs-upload-h5.contents": contents}))
        refusals.append(("h5 " + repr(contents)[:20], status, answer))
    big = data_uri(os.urandom(int(UPLOAD_MB * 2**20 * 3)))  # base64 of 3 MB: over max_body_bytes (3.7 MB)
    status, answer = server.post_json(route, body_for(upload, {"fs-upload-mri.contents": big,
                                                               "fs-upload-mri.filename": "big.png"}))
    assert status == 413 and b"MB this server accepts" in answer, (status, answer[:300])
    over_file = data_uri(os.urandom(int(UPLOAD_MB * 2**20 * 1.2)))  # one file over the limit, body within it
    send_upload(over_file, "big.png")

    # every upload was refused with a message in the page, and nothing was stored
    for name, status, data in refusals:
        assert status == 200, (name, status, data[:300])
        response = json.loads(data)["response"]
        if not response:
            continue
        assert response["fs-upload-msg"]["children"]["props"].get("id") == "fs-upload-error", (name, response)
        assert "fs-uploads" not in response, name

    # 4. what every answer looked like
    answers = server.answers
    assert len(answers) >= 300
    worst = [a for a in answers if a[1] >= 500 or a[2] > SLOWEST_S]
    assert not worst, worst[:5]
    assert not [a for a in answers if b"Traceback" in a[3]]
    callback_4xx = [a for a in answers if a[0].startswith("POST") and 400 <= a[1] < 500]
    assert all(a[3].startswith(b"{") for a in callback_4xx), [a for a in callback_4xx if not a[3].startswith(b"{")][:3]
    hover = [a for a in answers if "/fs-api/" in a[0]]
    # 414: gunicorn itself refuses a request line over 4094 bytes, before the app
    assert all(a[1] in (200, 400, 404, 414) for a in hover), [a for a in hover if a[1] not in (200, 400, 404, 414)][:3]
    assert all(a[3].startswith(b"{") for a in hover if a[1] != 414)

    # 5. memory back near its level, and the server still serves a good hover
    time.sleep(1)
    rss_after = server.rss_mb()
    assert rss_after - rss_before < RSS_GROWTH_MB, (rss_before, rss_after)
    status, data = server.get(f"/fs-api/pixel?pair={pair['id']}&models=weighted-average&row=100&col=90")
    assert status == 200 and json.loads(data)["models"]["weighted-average"]["dmri"] == pytest.approx(0.5)
    print(f"\n{len(answers)} malformed requests, statuses {sorted({a[1] for a in answers})}, slowest "
          f"{max(a[2] for a in answers):.2f} s; server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")


@pytest.mark.browser
def test_the_page_says_why_the_browser_refused_a_large_file(dash_duo, tmp_path):
    """dcc.Upload's max_size drops a larger file silently; assets/fs_upload_limit.js says why."""
    import torch

    import app as app_module
    from dashboard.config import Config

    threads = torch.get_num_threads()
    try:
        config = Config(cache_dir=str(tmp_path / "cache"), default_models=("weighted-average",), max_upload_mb=0.05)
        dash_duo.start_server(app_module.create_app(config))
        big = tmp_path / "big.png"
        big.write_bytes(os.urandom(80_000))
        dash_duo.wait_for_element("#fs-upload-pet input[type=file]", timeout=60).send_keys(str(big))
        dash_duo.wait_for_contains_text("#fs-upload-error", "big.png", timeout=30)
        text = dash_duo.find_element("#fs-upload-error").text
        assert "Upload refused: big.png (78 kB) is over the 51 kB a file may have on this server." in text, text
    finally:
        torch.set_num_threads(threads)
