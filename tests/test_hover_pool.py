"""Hovers in worker processes (``FUSION_HOVER_PROCESSES``): the same answers as in-process, and
whatever the workers cannot answer is computed in the calling process."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from saliency_helpers import pair

import fusion
from fusion.processes import running
from fusion.saliency import Method
from fusion.serving import SaliencyService


@pytest.fixture
def services(tmp_path):
    """A service hovering in two worker processes and one using threads, on one disk cache."""
    pooled = SaliencyService(cache_dir=tmp_path / "cache", hover_processes=2)
    local = SaliencyService(cache_dir=tmp_path / "cache", hover_processes=0)
    yield pooled, local
    pooled.close()
    local.close()


def test_workers_answer_like_the_calling_process(services):
    pooled, local = services
    names = fusion.list_models()
    a, b = (x.astype(np.float32) for x in pair(48, 40, seed=6))
    pair_id = pooled.put_pair(a, b)
    for row, col in [(0, 0), (47, 39), (20, 3), (31, 22)]:
        got, want = pooled.pixel(names, pair_id, row, col), local.pixel(names, pair_id, row, col)
        for name in names:  # equal up to float32 rounding (intra-op threads may split sums differently)
            scale = max(np.abs(want[name].ja).max(), np.abs(want[name].jb).max())
            np.testing.assert_allclose(got[name].ja, want[name].ja, rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(got[name].jb, want[name].jb, rtol=0, atol=1e-5 * scale)
            assert got[name].value == pytest.approx(want[name].value, rel=1e-5, abs=1e-6)
            assert (got[name].window, got[name].method) == (want[name].window, want[name].method)
            assert np.count_nonzero(got[name].ja) == np.count_nonzero(want[name].ja)
    assert pooled.computed["pixel"] == 4 * len(names) and not pooled.local_only
    assert set(pooled.hover_seconds) == {(name, 48, 40) for name in names}  # worker-measured times


def test_workers_prepare_their_window_programs(services):
    pooled, _ = services
    names = ["funfusean", "deeppedestrian"]
    pair_id = pooled.put_pair(*(x.astype(np.float32) for x in pair(40, 36, seed=2)))
    for name in names:
        pooled.planner.plan(name, 40, 36)
    prepared = [future.result(timeout=300) for future in pooled.hover_pool.warm(names, pair_id)]
    assert len(prepared) == 2
    for ready in prepared:
        assert {key[:3] for key in ready} == {(pooled.weights_hash(name), 40, 36) for name in names}
    pooled.prepare_hover(names, pair_id).result(timeout=300)  # waits for the workers too
    pooled.pixel(names, pair_id, 20, 18)
    assert pooled.computed["pixel"] == 2 and not pooled.local_only


def test_hovers_do_not_wait_for_workers_that_are_still_warming(services, monkeypatch):
    pooled, local = services
    pair_id = pooled.put_pair(*(x.astype(np.float32) for x in pair(30, 28, seed=5)))
    monkeypatch.setattr(pooled.hover_pool, "warming", lambda: True)  # a warm-up still running
    got = pooled.pixel(["funfusean", "deepfuse"], pair_id, 7, 9)
    assert not pooled.hover_pool.pids()  # computed here: no worker was started or waited for
    want = local.pixel(["funfusean", "deepfuse"], pair_id, 7, 9)
    for name in want:  # equal up to float32 rounding (the two models' threads may split sums differently)
        np.testing.assert_allclose(got[name].ja, want[name].ja, rtol=0, atol=1e-5 * np.abs(want[name].ja).max())


def test_hovers_that_wait_for_a_busy_worker_go_to_it_together(services):
    """Hovers that arrive while a worker computes wait in its lane's queue and then go as one batch,
    whose pixels of one model the worker computes together: the answers stay those of one at a time."""
    import threading
    import time

    pooled, local = services
    names = ["deepfuse", "masknet"]  # one per worker
    pair_id = pooled.put_pair(*(x.astype(np.float32) for x in pair(40, 44, seed=9)))
    pooled.pixel(names, pair_id, 0, 0)  # the workers are up
    pool = pooled.hover_pool
    before = dict(pool.sent)
    pixels = [(20, 22), (21, 22), (39, 43), (5, 30), (21, 22)]  # interior ones share a batch of crops; a repeat
    for pid in pool.pids():
        os.kill(pid, signal.SIGSTOP)
    got = [None] * len(pixels)
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, pooled.pixel(names, pair_id, *pixels[k])))
               for k in range(len(pixels))]
    try:
        threads[0].start()
        deadline = time.monotonic() + 60
        while pool.sent["batches"] < before["batches"] + 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first hover's tasks are with the (stopped) workers
        for thread in threads[1:]:
            thread.start()
        while pool.queued() < 2 * (len(pixels) - 1) and time.monotonic() < deadline:
            time.sleep(0.01)  # the others wait in the lanes' queues
        assert pool.queued() == 2 * (len(pixels) - 1)
    finally:
        for pid in pool.pids():
            os.kill(pid, signal.SIGCONT)
    for thread in threads:
        thread.join(120)
    assert {k: pool.sent[k] - before[k] for k in before} == {"batches": 4, "tasks": 2 * len(pixels)}
    assert pooled.computed["pixel"] == len(names) * (1 + len(pixels)) and not pooled.local_only
    for pixel, answer in zip(pixels, got, strict=True):
        want = local.pixel(names, pair_id, *pixel)
        for name in names:
            scale = max(np.abs(want[name].ja).max(), np.abs(want[name].jb).max())
            np.testing.assert_allclose(answer[name].ja, want[name].ja, rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(answer[name].jb, want[name].jb, rtol=0, atol=1e-5 * scale)
            assert (answer[name].row, answer[name].col, answer[name].window) == (*pixel, want[name].window)


def test_a_model_the_workers_do_not_have_and_a_broken_pool_are_computed_here(services):
    pooled, local = services
    a, b = (x.astype(np.float32) for x in pair(30, 30, seed=7))
    pair_id = pooled.put_pair(a, b)
    torch.manual_seed(3)
    other = fusion.create_model("funfusean", checkpoint=None)  # not what the workers build
    pooled.use_model("funfusean", other, "given-directly")
    got = pooled.pixel(["funfusean", "deepfuse"], pair_id, 10, 12)
    assert pooled.local_only == {"funfusean"}
    want = fusion.saliency.pixel_jacobians(other, *pooled.get_pair(pair_id), [(10, 12)])[0]
    np.testing.assert_allclose(got["funfusean"].ja, want.ja, rtol=0, atol=1e-6 * np.abs(want.ja).max())

    for pid in pooled.hover_pool.pids():  # the workers die: the hover is still answered
        os.kill(pid, signal.SIGKILL)
    got = pooled.pixel(["deepfuse", "masknet"], pair_id, 5, 5)
    want = local.pixel(["deepfuse", "masknet"], pair_id, 5, 5)
    np.testing.assert_allclose(got["masknet"].ja, want["masknet"].ja, rtol=0,
                               atol=1e-5 * np.abs(want["masknet"].ja).max())
    again = pooled.pixel(["deepfuse", "masknet"], pair_id, 6, 5)  # and a new pool serves the next
    assert again["deepfuse"].method == Method.CROPS and pooled.hover_pool.pids()


def test_hover_processes_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSION_HOVER_PROCESSES", "2")
    assert SaliencyService(cache_dir=tmp_path).hover_pool.workers == 2
    monkeypatch.setenv("FUSION_HOVER_PROCESSES", "two")
    with pytest.raises(ValueError, match="FUSION_HOVER_PROCESSES"):
        SaliencyService(cache_dir=tmp_path)


def test_a_hung_worker_is_replaced_and_the_hover_answered_here(services, monkeypatch):
    pooled, local = services
    pair_id = pooled.put_pair(*(x.astype(np.float32) for x in pair(30, 30, seed=8)))
    pooled.pixel(["deepfuse", "masknet"], pair_id, 1, 1)  # the workers are up
    for pid in pooled.hover_pool.pids():
        os.kill(pid, signal.SIGSTOP)  # hung, not dead
    monkeypatch.setattr(pooled.hover_pool, "timeout_s", 1.0)
    got = pooled.pixel(["deepfuse", "masknet"], pair_id, 7, 9)
    want = local.pixel(["deepfuse", "masknet"], pair_id, 7, 9)
    np.testing.assert_allclose(got["deepfuse"].jb, want["deepfuse"].jb, rtol=0,
                               atol=1e-5 * np.abs(want["deepfuse"].jb).max())
    assert not pooled.hover_pool.pids()  # replaced at the next hover


_ORPHANED_POOL = """
import ctypes, sys
from fusion.serving import HoverProcesses

pool = HoverProcesses(2, {"cache_dir": sys.argv[1]})
executor = pool.start()[0].executor
executor.submit(int).result(timeout=300)  # the worker is up
manager = executor._executor_manager_thread
# What dash.testing does to its server thread, landing in the pool's manager thread instead:
ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(manager.ident), ctypes.py_object(SystemExit))
executor._executor_manager_thread_wakeup.wakeup()
manager.join(60)
assert not manager.is_alive(), "the manager thread did not stop"
print("manager thread gone; exiting without closing the pool", flush=True)
"""


def test_an_unclosed_pool_whose_manager_thread_died_does_not_keep_the_interpreter_alive(tmp_path):
    """Nobody closes the pool and its manager thread is dead, so nothing tells the idle workers to stop:
    the at-exit handler kills them, else multiprocessing's exit handler would wait for them for ever."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _ORPHANED_POOL, str(tmp_path / "cache")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "manager thread gone" in done.stdout


_KILLED_OWNER = """
import os, sys, time
from fusion.serving import HoverProcesses

pool = HoverProcesses(2, {"cache_dir": sys.argv[1]})
for future in [lane.executor.submit(time.sleep, 1.0) for lane in pool.start()]:
    future.result(timeout=300)
print(" ".join(map(str, pool.pids())), flush=True)
os._exit(0)  # as SIGKILL would: no exit handler runs, nobody closes the pool
"""


def test_workers_exit_when_their_owner_is_killed(tmp_path):
    """A web process killed outright (gunicorn's SIGKILL, the OOM killer) leaves no idle workers behind.

    The workers inherit the owner's stdout, so ``run`` returns only once they have exited too.
    """
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _KILLED_OWNER, str(tmp_path / "cache")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    workers = [int(pid) for pid in done.stdout.split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 30
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if running(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their owner"
