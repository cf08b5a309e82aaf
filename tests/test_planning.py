"""Answer first, plan in the background: a server's hovers never probe, verify, time or record.

A service with ``planning="background"`` answers a hover of a model and image size it has not
planned at once with an exact path (the plain crop where the probed field allows it, else the full
image) while a low-priority thread plans; later hovers take the fast path. Planning checks a
representative image, so a large image costs what is checked, not its size.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from saliency_helpers import pair

import fusion
from fusion import background
from fusion.saliency import Method, pixel_jacobians, verification
from fusion.saliency import field as field_module
from fusion.saliency.field import Field, analyse, representative_shape
from fusion.serving import SaliencyService

BACKGROUND_THREADS = ("fusion-background", "fusion-probe")


@pytest.fixture
def one_off_work(monkeypatch):
    """Records (thread name, what, shape) of every probe and verification the engine runs."""
    seen = []
    real_probe, real_check = field_module.probe_support, verification.disagreement

    def probe(twin, size, *args):
        seen.append((threading.current_thread().name, "probe", size))
        return real_probe(twin, size, *args)

    def check(model, height, width, rows):
        seen.append((threading.current_thread().name, "verify", (height, width)))
        return real_check(model, height, width, rows)

    monkeypatch.setattr(field_module, "probe_support", probe)
    monkeypatch.setattr(verification, "disagreement", check)
    return seen


def exact_rows(model, a, b, pixels):
    """Plain full-image autograd, one pixel at a time: the reference every path must equal."""
    return pixel_jacobians(model, a, b, pixels, method=Method.FULL_IMAGE)


def assert_exact(got, want):
    for g, w in zip(got, want, strict=True):
        scale = max(np.abs(w.ja).max(), np.abs(w.jb).max(), 1e-12)
        np.testing.assert_allclose(g.ja, w.ja, rtol=0, atol=2e-5 * scale)
        np.testing.assert_allclose(g.jb, w.jb, rtol=0, atol=2e-5 * scale)
        assert abs(g.value - w.value) <= 1e-5 * max(1.0, abs(w.value))


@pytest.mark.parametrize("name", fusion.list_models())
def test_first_hover_is_exact_and_does_no_one_off_work(name, tmp_path, one_off_work):
    """Never planned: the answer comes at once from an exact path; probing and verification run only in the
    background thread; once planned, hovers take the fast path, exact at corners, edges and inside."""
    svc = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None, planning="background", hover_processes=0)
    try:
        a, b = (x.astype(np.float32) for x in pair(90, 84, seed=3))
        pair_id = svc.put_pair(a, b)
        a, b = svc.get_pair(pair_id)
        model = svc.model(name)
        pixels = [(0, 0), (0, 83), (89, 0), (89, 83), (45, 0), (0, 40), (89, 41), (44, 83), (45, 42)]
        want = exact_rows(model, a, b, pixels)
        first = [svc.pixel([name], pair_id, r, c)[name] for r, c in pixels[:2]]
        assert_exact(first, want[:2])
        assert first[0].method in (Method.CROPS, Method.FULL_IMAGE) and first[0].reason  # why not the fast path
        in_request = [w for w in one_off_work if w[0] not in BACKGROUND_THREADS]
        assert in_request == [], f"one-off work ran in the request: {in_request}"

        for future in svc.plan_ahead([name], [(90, 84)]):
            future.result(timeout=300)
        assert svc.planned(name, 90, 84)
        before = len(one_off_work)
        later = [svc.pixel([name], pair_id, r, c)[name] for r, c in pixels]
        assert_exact(later, want)
        assert len(one_off_work) == before  # planned: hovers verify nothing more
        field = analyse(model)
        fresh = later[2:]  # the first two pixels are remembered as first answered (exact too)
        assert {p.method for p in fresh} == ({Method.CROPS} if field.local else {Method.FULL_IMAGE})
    finally:
        svc.close()


def test_planning_checks_a_representative_image_not_the_whole(tmp_path, one_off_work):
    """A 512 x 512 image is verified on a small image with the same window geometries."""
    svc = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None, planning="background", hover_processes=0)
    try:
        for future in svc.plan_ahead(["funfusean"], [(512, 512)]):
            future.result(timeout=300)
        field = analyse(svc.model("funfusean"))
        shapes = {shape for _, what, shape in one_off_work if what == "verify"}
        assert shapes == {representative_shape(field, 512, 512)} and max(max(s) for s in shapes) < 100
        assert svc.planned("funfusean", 512, 512)
    finally:
        svc.close()


def test_a_second_process_reads_the_plan_instead_of_planning(tmp_path, one_off_work):
    """Two web processes on one cache: the plan made by one is read by the other (the bundled weights: the same)."""
    first = SaliencyService(cache_dir=tmp_path / "cache", planning="background", hover_processes=0)
    second = SaliencyService(cache_dir=tmp_path / "cache", planning="background", hover_processes=0)
    try:
        for future in first.plan_ahead(["deepfuse"], [(64, 60)]):
            future.result(timeout=300)
        done = len(one_off_work)
        assert second.planned("deepfuse", 64, 60) and len(one_off_work) == done
    finally:
        first.close()
        second.close()


def _geometries(reach_before: int, reach_after: int, n: int) -> set[tuple[int, bool, bool]]:
    """(window length, starts on the border, ends on the border) of every position's clipped field."""
    return {(min(p + reach_after + 1, n) - max(p - reach_before, 0), p - reach_before <= 0, p + reach_after + 1 >= n)
            for p in range(n)}


@pytest.mark.parametrize("field", [Field(11, 11, 11, 11), Field(17, 17, 8, 8), Field(0, 0, 0, 0),
                                   Field(3, 5, 2, 6, stride=4)])
@pytest.mark.parametrize("shape", [(8, 8), (40, 33), (256, 256), (320, 320), (513, 1000)])
def test_representative_shape_keeps_every_window_geometry(field, shape):
    small = representative_shape(field, *shape)
    assert small[0] <= shape[0] and small[1] <= shape[1]
    assert _geometries(field.up, field.down, small[0]) == _geometries(field.up, field.down, shape[0])
    assert _geometries(field.left, field.right, small[1]) == _geometries(field.left, field.right, shape[1])
    assert small[0] % field.stride == shape[0] % field.stride and small[1] % field.stride == shape[1] % field.stride


def test_background_work_runs_once_per_key_by_priority():
    work = background.BackgroundWork()
    gate, order = threading.Event(), []
    try:
        blocker = work.submit("gate", 0, gate.wait)
        time.sleep(0.1)  # the thread is inside the gate: the rest queue up
        late = work.submit("b", background.PREPARE, lambda: order.append("b") or "b")
        early = work.submit("a", background.FIELD, lambda: order.append("a") or "a")
        assert work.submit("a", background.FIELD, lambda: order.append("again")) is early  # queued once
        failing = work.submit("c", background.PLAN, lambda: 1 / 0)
        gate.set()
        assert blocker.result(5) and early.result(5) == "a" and late.result(5) == "b"
        with pytest.raises(ZeroDivisionError):
            failing.result(5)
        assert order == ["a", "b"]
    finally:
        work.close()


def test_closed_background_work_cancels_what_waits_and_starts_again():
    work = background.BackgroundWork()
    gate = threading.Event()
    running = work.submit("gate", 0, gate.wait)
    time.sleep(0.1)
    queued = work.submit("queued", 1, lambda: "never")
    work.close()
    gate.set()
    assert running.result(5) is True and queued.cancelled()
    assert work.submit("after", 1, lambda: "ran").result(5) == "ran"
    work.close()


def test_full_image_answer_needs_no_field(monkeypatch):
    """The exact fallback itself never probes."""
    model = fusion.create_model("deeppedestrian", checkpoint=None)
    monkeypatch.setattr(field_module, "probe_support", lambda *args: pytest.fail("probed"))
    a, b = (torch.rand(20, 18) for _ in "ab")
    (result,) = pixel_jacobians(model, a, b, [(3, 4)], method=Method.FULL_IMAGE)
    assert result.method == Method.FULL_IMAGE and result.window == (0, 20, 0, 18)


@pytest.mark.parametrize("budget_mb, records", [(0.5, 0), (512, 1)])
def test_kept_activations_larger_than_the_budget_are_never_made(tmp_path, budget_mb, records):
    """A pair whose kept forward pass would not fit ``hover_memory_bytes`` is not recorded at all (its size is
    estimated from a small record first), so a large image costs no memory spike."""
    svc = SaliencyService(cache_dir=tmp_path / "cache", checkpoint=None, planning="background", hover_processes=0,
                          replay="always", hover_memory_bytes=int(budget_mb * 2**20))
    try:
        pair_id = svc.put_pair(*(x.astype(np.float32) for x in pair(64, 64, seed=5)))
        svc.prepare_hover(["funfusean"], pair_id).result(timeout=300)
        assert svc.computed["record"] == records
        result = svc.pixel(["funfusean"], pair_id, 32, 32)["funfusean"]
        (want,) = exact_rows(svc.model("funfusean"), *svc.get_pair(pair_id), [(32, 32)])
        assert_exact([result], [want])
    finally:
        svc.close()
