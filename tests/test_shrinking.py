"""Shrinking windows (only the activations that reach the pixel), and their replay of kept full-image
activations: exact where used, refused where not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from saliency_helpers import Dilated, DownUp, brute_jacobian, build, fresh, pair
from torch import nn

import fusion
from fusion.saliency import (
    Method,
    analyse,
    pixel_jacobians,
    record_forward,
    replay_pays,
    verify_replay,
    verify_shrinking,
)
from fusion.saliency.crops import crop_rows
from fusion.saliency.planning import record_windows
from fusion.saliency.programs import recorded_programs, run_windows
from fusion.saliency.reference import full_rows
from fusion.saliency.replay import ReplayWindows
from fusion.saliency.state import fingerprint
from fusion.saliency.windows import NotRecordable, ShrinkingWindows, Unsupported


def every_pixel_rows(model, a, b, shrinking: bool, replay: bool = False):
    """Every pixel's rows by the crop path; ``replay``: from kept full-image activations."""
    field = analyse(model)
    pixels = [(r, c) for r in range(a.shape[0]) for c in range(a.shape[1])]
    ta, tb = (torch.tensor(x, dtype=torch.float64) for x in (a, b))
    record = record_forward(model, ta, tb) if replay else None
    rows_a, rows_b, values = crop_rows(model, ta, tb, pixels, field, shrinking=shrinking, record=record)
    shape = (*a.shape, *a.shape)
    return rows_a.numpy().reshape(shape), rows_b.numpy().reshape(shape), values.numpy().reshape(a.shape)


@pytest.mark.parametrize("replay", [False, True], ids=["computed", "replayed"])
@pytest.mark.parametrize("name", fusion.list_models())
def test_every_pixel_of_an_odd_image_matches_autograd(name, replay):
    """All pixels (every border and corner case) of a 13 x 17 image, smaller than most fields."""
    model = fresh(name)
    a, b = pair(13, 17, seed=8)
    want_a, want_b, want_out = brute_jacobian(model, a, b)
    got_a, got_b, got_out = every_pixel_rows(model, a, b, shrinking=True, replay=replay)
    for got, want in ((got_a, want_a), (got_b, want_b), (got_out, want_out)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(np.abs(want).max(), 1.0))


@pytest.mark.parametrize("name", fusion.list_models())
def test_registered_models_use_shrinking_windows(name):
    assert verify_shrinking(fresh(name), 40, 33)
    assert verify_shrinking(fresh(name, torch.float32), 256, 256)
    assert verify_replay(fresh(name), 40, 33)
    assert verify_replay(fresh(name, torch.float32), 256, 256)


@pytest.mark.parametrize("name", fusion.list_models())
def test_replay_with_trained_weights_matches_autograd_at_borders_and_corners(name):
    """The bundled weights in float32: kept activations against one full-image backward pass per pixel."""
    model = fusion.create_model(name)
    size = 128
    a, b = (torch.tensor(x, dtype=torch.float32) for x in pair(size, size, seed=5))
    pixels = [(0, 0), (0, size - 1), (size - 1, 0), (size - 1, size - 1), (0, 61), (90, size - 1), (66, 63)]
    got = pixel_jacobians(model, a, b, pixels, record=record_forward(model, a, b))
    want_a, want_b, want_out = full_rows(model, a, b, pixels)
    for k, res in enumerate(got):
        assert res.method == Method.CROPS
        scale = float(max(want_a[k].abs().max(), want_b[k].abs().max()))
        np.testing.assert_allclose(res.ja, want_a[k].numpy(), rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(res.jb, want_b[k].numpy(), rtol=0, atol=1e-5 * scale)
        assert res.value == pytest.approx(float(want_out[k]), rel=1e-5, abs=1e-6)


def test_a_record_of_another_pair_or_other_weights_is_refused():
    model = fresh("funfusean")
    a, b = pair(20, 22, seed=1)
    record = record_forward(model, a, b)
    other_a = a.copy()
    other_a[3, 4] += 0.25
    with pytest.raises(ValueError, match="another image pair"):
        pixel_jacobians(model, other_a, b, [(5, 5)], record=record)
    with torch.no_grad():
        next(model.parameters())[0].mul_(2.0)
    with pytest.raises(ValueError, match="other weights"):
        pixel_jacobians(model, a, b, [(5, 5)], record=record)


class TwoConvs(nn.Module):
    def __init__(self, n: int = 2):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(2 if k == 0 else 3, 3, 3, padding=1) for k in range(n))
        self.head = nn.Conv2d(3, 1, 1)

    def forward(self, a, b):
        x = torch.cat([a, b], dim=1)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x)


def test_replay_refuses_a_record_of_other_convolutions():
    """The replay follows the record call by call: more, fewer or other convolutions are refused."""
    a, b = (torch.rand(12, 12, dtype=torch.float64) for _ in "ab")
    record = record_forward(build(TwoConvs), a, b)
    window = a[None, None, :7, :7]
    for model, message in ((build(lambda: TwoConvs(3)), "more|order"), (build(lambda: TwoConvs(1)), "fewer|order")):
        with pytest.raises(Unsupported, match=message):
            ReplayWindows((True, False, True, False), record, [(0, 0)]).run(model, window, window.clone())


@pytest.mark.parametrize("name", fusion.list_models())
def test_interior_window_shrinks_to_the_pixel(name):
    """Away from the border, the last activation is exactly the one pixel asked for."""
    model = fresh(name)
    field = analyse(model)
    window = torch.rand(1, 1, field.rows, field.cols, dtype=torch.float64)
    out, extent = ShrinkingWindows((False,) * 4).run(model, window, window.clone())
    assert out.shape[-2:] == (1, 1)
    assert (extent.top, extent.left) == (field.up, field.left)


class ReflectPadded(nn.Module):
    """Local, but its reflect padding is an F.pad the shrinking windows do not follow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, padding_mode="reflect")

    def forward(self, a, b):
        return self.conv(torch.cat([a, b], dim=1))


class ShiftedSkip(nn.Module):
    """A spatial roll: local near the centre, but not an operation the windows understand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, a, b):
        x = self.conv(torch.cat([a, b], dim=1))
        return x + torch.roll(a, shifts=1, dims=-1)


@pytest.mark.parametrize("cls", [ReflectPadded, ShiftedSkip, DownUp])
def test_unsupported_models_keep_the_plain_crop_path(cls):
    model = build(cls)
    assert not verify_shrinking(model, 29, 31)
    a, b = pair(29, 31, seed=2)
    pixels = [(0, 0), (28, 30), (14, 15), (0, 17)]
    results = pixel_jacobians(model, a, b, pixels)
    want_a, want_b, _ = brute_jacobian(model, a, b)
    for res in results:
        np.testing.assert_allclose(res.ja, want_a[res.row, res.col], atol=1e-6)
        np.testing.assert_allclose(res.jb, want_b[res.row, res.col], atol=1e-6)


def test_dilated_convolutions_shrink_exactly():
    model = build(Dilated)
    assert verify_shrinking(model, 30, 30)
    a, b = pair(15, 14, seed=4)
    want_a, want_b, _ = brute_jacobian(model, a, b)
    got_a, got_b, _ = every_pixel_rows(model, a, b, shrinking=True)
    np.testing.assert_allclose(got_a, want_a, atol=1e-12)
    np.testing.assert_allclose(got_b, want_b, atol=1e-12)


def test_strict_shrinking_reports_what_it_cannot_follow():
    model = build(ReflectPadded)
    a, b = (torch.rand(9, 9, dtype=torch.float64) for _ in "ab")
    with pytest.raises(Unsupported, match="pad"):
        crop_rows(model, a, b, [(4, 4)], analyse(model), shrinking=True)


@pytest.mark.parametrize("cls", [ReflectPadded, ShiftedSkip, DownUp])
def test_models_the_windows_cannot_follow_are_not_recorded(cls):
    model = build(cls)
    assert not verify_replay(model, 29, 31)
    with pytest.raises(Unsupported):
        record_forward(model, *pair(29, 31))


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (40, 33)])
def test_replay_timing_runs_on_any_image_shape(shape):
    """``replay_pays`` times hovers near the centre: also on images smaller than its offsets."""
    model = fresh("deepfuse", torch.float32)
    assert verify_replay(model, *shape)
    assert isinstance(replay_pays(model, *shape), bool)


# ------------------------------------------------------------------ recorded window programs
def assert_every_pixel_exact(model, a, b, replay: bool = False):
    want_a, want_b, want_out = brute_jacobian(model, a, b)
    got_a, got_b, got_out = every_pixel_rows(model, a, b, shrinking=True, replay=replay)
    for got, want in ((got_a, want_a), (got_b, want_b), (got_out, want_out)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(np.abs(want).max(), 1.0))


@pytest.mark.parametrize("replay", [False, True], ids=["computed", "replayed"])
@pytest.mark.parametrize("name", fusion.list_models())
def test_recorded_window_programs_replay_exactly(name, replay):
    """Every pixel twice: the first pass records a program per window geometry, the second replays them
    (with ``replay``: programs that read kept activations, on a record of another pair the second time)."""
    model = fresh(name)
    a, b = pair(13, 17, seed=9)
    assert_every_pixel_exact(model, a, b, replay)
    programs = recorded_programs(model)
    assert programs and all(program is not None for program in programs.values())
    assert_every_pixel_exact(model, *pair(13, 17, seed=10), replay)
    assert recorded_programs(model).keys() == programs.keys()  # nothing recorded again


@pytest.mark.parametrize("name", fusion.list_models())
def test_window_programs_follow_changed_weights(name):
    model = fresh(name)
    a, b = pair(16, 16, seed=3)
    every_pixel_rows(model, a, b, shrinking=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    assert_every_pixel_exact(model, a, b)


@pytest.mark.parametrize("name", fusion.list_models())
def test_edge_programs_are_prepared_ahead(name):
    """After ``record_windows``, no hover along the edges records a program (only the corner regions,
    where the window touches two sides, are left to their first use)."""
    model = fresh(name, torch.float32)
    height, width = 64, 48
    field = analyse(model)
    assert record_windows(model, height, width) > 0
    ready = set(recorded_programs(model))
    a, b = (torch.tensor(x, dtype=torch.float32) for x in pair(height, width, seed=2))
    for r in range(height):
        for c in range(width):
            if field.up < r < height - 1 - field.down or field.left < c < width - 1 - field.right:
                crop_rows(model, a, b, [(r, c)], field, shrinking=True)
    assert set(recorded_programs(model)) == ready


class ReadsItsActivations(nn.Module):
    """Local and exact under the windows, but it reads a value of an activation (here only to look)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, a, b):
        x = self.conv(torch.cat([a, b], dim=1))
        self.seen = x.tolist()
        return torch.tanh(x)


def test_a_model_that_reads_its_activations_is_not_recorded():
    model = build(ReadsItsActivations)
    window = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    with pytest.raises(NotRecordable, match="tolist"):
        ShrinkingWindows((False,) * 4, recording=True).run(model, window, window.clone())
    a, b = pair(9, 11, seed=6)
    assert_every_pixel_exact(model, a, b)
    programs = recorded_programs(model)
    assert programs and all(p is None for p in programs.values())


def test_a_program_replays_the_same_kernels_bit_for_bit():
    model = fresh("funfusean", torch.float32)
    window = torch.rand(2, 1, 30, 31)
    border = (True, False, False, True)
    want, want_extent = ShrinkingWindows(border).run(model, window, window.flip(-1))
    run_windows(model, border, window, window.flip(-1))  # records
    got, extent = run_windows(model, border, window, window.flip(-1))  # replays
    assert extent == want_extent and torch.equal(got, want)


def test_switching_training_mode_changes_the_fingerprint():
    model = fresh("deepfuse")
    before = fingerprint(model)
    model.train()
    assert fingerprint(model) != before
    model.eval()
    assert fingerprint(model) == before
