"""The photo-maps sections on tiny stand-ins (3-class models on 32x32 RGB made here): piece counts,
noise shares, and rendering with and without the imagenet extra."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advlab.experiments.context as context_module
from advlab import analysis as an
from advlab.data import ImageDataset
from advlab.experiments import PhotoSet, PhotosUnavailable
from advlab.experiments.photo_maps import (
    noise_share,
    photo_cross_section,
    run_photo_cross_section,
    run_photo_noise,
)
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections

META = {"version": "0", "dataset": "digits", "mode": "quick", "seconds": 0.0, "seed": 0,
        "notices": [], "date": "today"}
KEYS = ["photo_cross_section", "photo_decision_map", "photo_noise", "photo_physical"]


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def _linear_set() -> PhotoSet:
    g = torch.Generator().manual_seed(3)
    images = _images(12, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 3 * 32 * 32, generator=g) * 0.01)
        model[1].bias.zero_()
        labels = model(images.float() / 255).argmax(1)
    ds = ImageDataset(images=images, labels=labels, classes=("a", "b", "c"), name="stand-in", split="test")
    return PhotoSet(model=model.eval(), photos=ds, model_name="linear stand-in")


def _relu_set() -> PhotoSet:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 3))
    images = _images(12, 5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        labels = model(images.float() / 255).argmax(1)
    ds = ImageDataset(images=images, labels=labels, classes=("a", "b", "c"), name="stand-in", split="test")
    return PhotoSet(model=model.eval(), photos=ds, model_name="relu stand-in")


@pytest.fixture
def ctx(digits_train, digits_test, tmp_path):  # type: ignore[no-untyped-def]
    c = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    c.use_photos(_relu_set())
    return c


def test_a_linear_model_is_one_piece_with_exactly_linear_logits(digits_train, digits_test,
                                                               tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    c.use_photos(_linear_set())
    d = run_photo_cross_section(c, steps=31).data
    assert [r["pieces"] for r in d["rows"]] == [1, 1]
    assert all(r["end_class_tail_r2"] > 0.99999 for r in d["rows"])
    fgsm = d["rows"][0]
    assert fgsm["wrong_at_end"] and fgsm["first_flip_t"] is not None  # FGSM on a linear model flips


def test_streamed_piece_count_equals_the_library_cross_section() -> None:
    ps = _relu_set()
    x, y = ps.tensors()
    d = an.random_sign_direction(x[0].shape, generator=torch.Generator().manual_seed(1))
    ref = an.cross_section(ps.model, x[0], d, span=2.0, steps=53, label=int(y[0]))
    ours = photo_cross_section(ps.model, x[0], d, span=2.0, steps=53, label=int(y[0]), batch_size=7)
    assert ref.n_pieces > 1 and ours.n_pieces == ref.n_pieces
    assert ours.breakpoints == pytest.approx(ref.breakpoints)
    assert torch.allclose(ours.logits, ref.logits, atol=1e-5)


class _Rigged(nn.Module):
    """Class 2 wins unless the mean pixel is below 0.2 (then class 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([(0.2 - m) * 100, torch.zeros_like(m), torch.full_like(m, 1.0)], 1)


def test_noise_shares_sum_to_one_and_a_rigged_model_owns_noise_space(digits_train, digits_test,
                                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    z = torch.cat([torch.zeros(5, 3, 32, 32), torch.full((15, 3, 32, 32), 0.5)])
    share, conf = noise_share(_Rigged().eval(), z, 3, batch=4)
    assert share.tolist() == pytest.approx([0.25, 0.0, 0.75]) and 0 < conf <= 1
    ps = _linear_set()
    ps.model = _Rigged().eval()
    c = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    c.use_photos(ps)
    d = run_photo_noise(c, n=10).data
    assert len(d["rows"]) == 6
    for r in d["rows"]:
        assert r["share_sum"] == pytest.approx(1.0)
        assert r["top"][0]["class"] == "c" and r["top_share"] == 1.0  # grey noise: mean ~0.5
    assert d["target"] == "a" and d["fgsm_to_target"] == 0.0  # 16/255 cannot drag the mean to 0.2


def test_sections_render_with_and_without_the_extra(ctx, digits_train, digits_test, tmp_path,  # type: ignore[no-untyped-def]
                                                    monkeypatch) -> None:
    secs = run_sections(ctx, KEYS)
    html = render_report("t", secs, META)
    assert "linear pieces seen" in html and "winning classes" in html
    assert "destruction rate (ours)" in html and "mean max confidence" in html
    assert html.count("data:image/png;base64") >= 4  # cross section, maps, noise, destruction
    by_key = {sec.key: sec for sec in secs}
    assert set(by_key["photo_noise"].figures) == {"noise"}
    assert set(by_key["photo_physical"].figures) == {"destruction"}

    def missing() -> PhotoSet:
        raise PhotosUnavailable("the ImageNet sections need the imagenet extra: pip install x")

    monkeypatch.setattr(context_module, "load_photo_set", missing)
    bare = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    html = render_report("t", run_sections(bare, KEYS), META)
    assert html.count("the ImageNet sections need the imagenet extra") == 4
