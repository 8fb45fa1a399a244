"""The photo sections on a tiny stand-in (a 3-class linear model on 32x32 RGB photos it makes):
the 8-bit claim by construction, the numbers, and rendering with and without the extra."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import advlab.experiments.context as context_module
from advlab.data import ImageDataset
from advlab.experiments import PhotoSet, PhotosUnavailable
from advlab.experiments.photo_attacks import rounds_to_clean, run_panda, run_photo_attacks
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections

META = {"version": "0", "dataset": "digits", "mode": "quick", "seconds": 0.0, "seed": 0,
        "notices": [], "date": "today"}


def _stand_in() -> PhotoSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(12) % 3
    images = torch.randint(0, 256, (12, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[:, :, :8, :8] = (labels[:, None, None, None] * 100).to(torch.uint8)  # a class patch
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        patch = torch.zeros(3, 32, 32)
        patch[:, :8, :8] = 1.0
        for c in range(3):  # logit c = -(mean patch value - c * 100/255)^2, linearised
            model[1].weight[c] = patch.flatten() * (c * 100 / 255) / 192
            model[1].bias[c] = -((c * 100 / 255) ** 2) / 2 * (192 / 192)
    ds = ImageDataset(images=images, labels=labels, classes=("a", "b", "c"), name="stand-in", split="test")
    return PhotoSet(model=model.eval(), photos=ds, model_name="stand-in")


def _linear_stand_in() -> PhotoSet:
    """Random 3-class linear model on random photos labelled by it: margins spread so that FGSM
    fools some photos at 0.5/255 and more at 8/255."""
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (30, 3, 32, 32), generator=g, dtype=torch.uint8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 3 * 32 * 32, generator=g) * 0.01)
        model[1].bias.zero_()
        labels = model(images.float() / 255).argmax(1)
    ds = ImageDataset(images=images, labels=labels, classes=("a", "b", "c"), name="stand-in", split="test")
    return PhotoSet(model=model.eval(), photos=ds, model_name="linear stand-in")


@pytest.fixture
def ctx(digits_train, digits_test, tmp_path):  # type: ignore[no-untyped-def]
    c = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    c.use_photos(_stand_in())
    return c


def test_stand_in_is_mostly_right() -> None:
    ps = _stand_in()
    x, y = ps.tensors()
    assert float((ps.model(x).argmax(1) == y).float().mean()) >= 0.75


def test_rounding_claim_holds_by_construction() -> None:
    clean = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    x = clean.float() / 255
    delta = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 0.49 / 255
    assert bool(rounds_to_clean((x + delta).clamp(0, 1), clean).all())
    bumped = x.clone()
    bumped[0, 0, 0, 0] += 0.51 / 255
    first_at_top = bool(clean[0, 0, 0, 0] == 255)  # clamped back: still the clean value
    assert rounds_to_clean(bumped.clamp(0, 1), clean).tolist() == [first_at_top, True, True, True]


def test_panda_numbers(ctx) -> None:  # type: ignore[no-untyped-def]
    run = run_panda(ctx, eps=8 / 255, target=2)
    d = run.data
    assert d["clean"]["label"] == d["rows"][0]["top"]["label"] or d["rows"][0]["success"]
    eb = d["eight_bit"]
    assert eb["rounds_to_clean"] == eb["n_correct"]  # PGD at 0.49/255 never changes an 8-bit value
    assert 0 <= eb["flipped"] <= eb["n_correct"]
    targeted = d["rows"][-1]
    assert targeted["attack"].startswith("targeted") and targeted["target_confidence"] is not None
    assert d["passes"] > 0


def test_photo_attacks_success_grows_with_eps_for_fgsm_on_a_linear_model(ctx) -> None:  # type: ignore[no-untyped-def]
    ctx.use_photos(_linear_stand_in())
    d = run_photo_attacks(ctx).data
    fgsm = [r["success"] for r in d["rows"] if r["attack"] == "FGSM"]
    assert fgsm == sorted(fgsm)  # one linear model, one gradient: more eps never fools fewer
    assert 0 < fgsm[0] < fgsm[-1] and d["n_correct"] == 30
    pgd = [r["success"] for r in d["rows"] if r["attack"] != "FGSM"]
    assert all(p >= f for p, f in zip(pgd, fgsm, strict=True))  # PGD's first step is FGSM's
    assert all(0 <= r["success"] <= 1 for r in d["rows"])


def test_sections_render_with_and_without_the_extra(ctx, digits_train, digits_test, tmp_path,  # type: ignore[no-untyped-def]
                                                    monkeypatch) -> None:
    secs = run_sections(ctx, ["photo_panda", "photo_attacks"])
    html = render_report("t", secs, META)
    assert "Below one display level" in html and html.count("data:image/png;base64") >= 2

    def missing() -> PhotoSet:
        raise PhotosUnavailable("the ImageNet sections need the imagenet extra: pip install x")

    monkeypatch.setattr(context_module, "load_photo_set", missing)
    bare = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    secs = run_sections(bare, ["photo_panda", "photo_attacks"])
    html = render_report("t", secs, META)
    assert html.count("the ImageNet sections need the imagenet extra") == 2


def test_class_weight_direction_of_a_linear_model_is_the_weight_sign() -> None:
    from advlab.experiments.photo_attacks import class_weight_direction

    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.rand(1, 3, 4, 4)
    d = class_weight_direction(model, x, source=1, target=4, eps=0.1)
    w = model[1].weight.detach()
    assert torch.equal(d.flatten(), 0.1 * (w[4] - w[1]).sign())


def test_class_direction_runs_and_renders(ctx) -> None:  # type: ignore[no-untyped-def]
    (sec,) = run_sections(ctx, ["photo_class_direction"])
    rows = sec.data["rows"]
    assert len(rows) == 2 and all(0 <= r["to_target"] <= r["changed"] + 1e-9 <= 1 + 1e-9 for r in rows)
    assert "other photos that become" in render_report("t", [sec], META)


def test_photo_attacks_fgsm_shortcut_matches_the_fgsm_attack(ctx) -> None:  # type: ignore[no-untyped-def]
    from advlab.attacks import FGSM
    from advlab.criteria import Misclassification
    from advlab.experiments.photo_attacks import PHOTO_EPS
    from advlab.threat import ThreatModel

    ctx.use_photos(_linear_stand_in())
    d = run_photo_attacks(ctx, steps=1).data
    ps = ctx.photos()
    x, y = ps.tensors()
    keep = ps.model(x).argmax(1) == y
    got = [r["success"] for r in d["rows"] if r["attack"] == "FGSM"]
    want = [FGSM()(ps.model, x[keep], Misclassification(y[keep]), threat=ThreatModel("linf", e / 255),
                   generator=torch.Generator().manual_seed(0)).success_rate for e in PHOTO_EPS]
    assert got == pytest.approx(want)
    assert sum(r["passes"] for r in d["rows"] if r["attack"] == "FGSM") == int(keep.sum())


def test_cli_without_the_extra_is_one_line(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    import advlab.cli.app as app_module

    def missing() -> PhotoSet:
        raise PhotosUnavailable("the ImageNet sections need the imagenet extra: pip install x")

    monkeypatch.setattr(context_module, "load_photo_set", missing)
    monkeypatch.setattr(sys, "argv", ["advlab", "analyze", "panda", "--dataset", "digits", "--out",
                                      str(Path.cwd() / "never")])
    with pytest.raises(SystemExit) as info:
        app_module.main()
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err and "internal error" not in err
    assert "need the imagenet extra" in err
