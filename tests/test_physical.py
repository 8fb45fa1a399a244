"""Physical world: camera-like transforms, destruction rate, ILLC and EOT (issue 7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advlab.attacks import BIM, FGSM, create_attack
from advlab.criteria import TargetedMisclassification
from advlab.defenses import TrainConfig, fit
from advlab.models import create_model
from advlab.physical import (
    EOT,
    ILLC,
    JPEG,
    Affine,
    BrightnessContrast,
    Compose,
    GaussianBlur,
    GaussianNoise,
    Identity,
    Quantize,
    create_transform,
    destruction_experiment,
    destruction_rate,
    destruction_rate_from_predictions,
    physical_attacks,
    print_and_photograph,
    standard_transforms,
)
from advlab.threat import ThreatModel

ALL = {**standard_transforms(), "identity": Identity(),
       "compose": Compose([GaussianNoise(std=(0.0, 0.1)), Quantize(4)])}


def images(n: int = 4, c: int = 1, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("channels", [1, 3])
def test_transform_deterministic_in_range_and_pure(name, channels):  # type: ignore[no-untyped-def]
    t = ALL[name]
    x = images(c=channels)
    x_copy = x.clone()
    rng = torch.get_rng_state()
    a = t(x, torch.Generator().manual_seed(3))
    b = t(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(x, x_copy)  # never in place
    assert a.data_ptr() != x.data_ptr()
    assert torch.equal(torch.get_rng_state(), rng)  # only the generator was used


@pytest.mark.parametrize("name", ["brightness", "contrast", "noise", "affine", "photo"])
def test_random_transforms_depend_on_the_seed(name):  # type: ignore[no-untyped-def]
    t = create_transform(name)
    x = images()
    assert not torch.equal(t(x, torch.Generator().manual_seed(0)), t(x, torch.Generator().manual_seed(1)))


def test_quantize_known_values():
    x = torch.tensor([0.2, 0.26, 0.6, 1.0]).view(1, 1, 1, 4)
    assert torch.equal(Quantize(1)(x).flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    x2 = torch.tensor([0.1, 0.26, 0.6, 1.0]).view(1, 1, 1, 4)  # 3x: 0.3, 0.78, 1.8, 3 -> 0, 1, 2, 3
    assert torch.allclose(Quantize(2)(x2).flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    y = Quantize(8)(x).flatten() * 255
    assert torch.allclose(y, y.round(), atol=1e-4)
    assert torch.allclose(y, torch.tensor([51.0, 66.0, 153.0, 255.0]), atol=1e-4)


def test_brightness_contrast_known_values():
    x = torch.tensor([0.0, 0.3, 0.5]).view(1, 1, 1, 3)
    y = BrightnessContrast(brightness=0.1, contrast=2.0)(x).flatten()  # clip(2x + 0.1)
    assert torch.allclose(y, torch.tensor([0.1, 0.7, 1.0]))
    # a range draws one value per image, constant within the image
    y = BrightnessContrast(brightness=(-0.2, 0.2))(torch.full((5, 1, 3, 3), 0.5),
                                                    torch.Generator().manual_seed(0))
    per_image = y.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image))
    assert float((per_image - 0.5).abs().max()) <= 0.2 + 1e-6
    assert per_image[:, 0].unique().numel() == 5


def test_gaussian_blur_known_values():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    y = GaussianBlur(sigma=1.0)(x)[0, 0]
    g = torch.exp(-0.5 * torch.arange(-3.0, 4.0) ** 2)
    g = g / g.sum()
    assert torch.allclose(y[1:8, 1:8], g[:, None] * g[None, :], atol=1e-6)  # separable kernel
    assert math.isclose(float(y.sum()), 1.0, rel_tol=1e-5)
    assert torch.equal(GaussianBlur(sigma=0.0)(x), x)
    const = torch.full((2, 3, 5, 5), 0.4)
    assert torch.allclose(GaussianBlur(sigma=(0.5, 2.0))(const, torch.Generator().manual_seed(0)), const)


def test_gaussian_noise_statistics():
    x = torch.full((4, 1, 64, 64), 0.5)
    y = GaussianNoise(std=0.05)(x, torch.Generator().manual_seed(0))
    assert math.isclose(float((y - x).std()), 0.05, rel_tol=0.05)
    assert abs(float((y - x).mean())) < 0.005
    assert torch.equal(GaussianNoise(std=0.0)(x), x)


def test_jpeg_is_lossy_but_close_and_straight_through():
    r = torch.linspace(0, 1, 16)
    smooth = torch.stack([r[:, None] * r[None, :], r[:, None].expand(16, 16), 1 - r[None, :].expand(16, 16)])
    x = torch.stack([smooth, smooth.flip(1)])  # (2, 3, 16, 16), a smooth photo-like image
    y = JPEG(quality=90)(x)
    assert 0 < float((y - x).abs().mean()) < 0.02
    assert torch.allclose(JPEG(quality=90)(torch.full((1, 1, 8, 8), 0.4)), torch.full((1, 1, 8, 8), 0.4),
                          atol=1 / 255 + 1e-6)
    low = float((JPEG(quality=5)(x) - x).abs().mean())
    assert low > float((y - x).abs().mean())  # lower quality, larger error
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(JPEG(quality=50)(xg).sum(), xg)
    assert torch.equal(g, torch.ones_like(x))  # BPDA: identity gradient


def test_affine_known_geometry():
    x = images(n=2, h=7, w=9)
    assert torch.allclose(Affine()(x), x, atol=1e-6)
    assert torch.allclose(Affine(rotation=180.0)(x), torch.flip(x, dims=(2, 3)), atol=1e-5)
    # a shift by one pixel (as a fraction of the width) moves the content one pixel
    dot = torch.zeros(1, 1, 9, 9)
    dot[0, 0, 3, 4] = 1.0
    y = Affine(translate=1 / 9, padding="zeros")(dot)  # the same shift down and right
    expected = torch.zeros(1, 1, 9, 9)
    expected[0, 0, 4, 5] = 1.0
    assert torch.allclose(y, expected, atol=1e-5)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(Affine(rotation=10.0)(xg).sum(), xg)
    assert float(g.abs().sum()) > 0  # differentiable


def test_print_and_photograph_preset():
    t = print_and_photograph()
    assert [type(s).__name__ for s in t.transforms] == [
        "Affine", "GaussianBlur", "BrightnessContrast", "GaussianNoise", "JPEG", "Quantize"]
    assert not t.exact_gradient
    x = images()
    y = t(x, torch.Generator().manual_seed(0))
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-4)  # ends as an 8-bit image
    weak = float((print_and_photograph(0.5)(x, torch.Generator().manual_seed(0)) - x).abs().mean())
    strong = float((print_and_photograph(1.5)(x, torch.Generator().manual_seed(0)) - x).abs().mean())
    assert weak < strong
    assert torch.equal(print_and_photograph(0.0)(x), Quantize(8)(x))


@pytest.mark.parametrize("make,err,match", [
    (lambda: Quantize(0), ValueError, "bits"),
    (lambda: Quantize(8.0), ValueError, "bits"),
    (lambda: BrightnessContrast(contrast=0.0), ValueError, "contrast"),
    (lambda: BrightnessContrast(brightness=(0.2, -0.2)), ValueError, "low <= high"),
    (lambda: BrightnessContrast(brightness=(0.1, 0.2, 0.3)), ValueError, "pair"),
    (lambda: GaussianBlur(sigma=-1.0), ValueError, "sigma"),
    (lambda: GaussianBlur(radius=-2), ValueError, "radius"),
    (lambda: GaussianNoise(std="0.1"), TypeError, "std"),
    (lambda: GaussianNoise(std=float("nan")), ValueError, "std"),
    (lambda: JPEG(quality=100), ValueError, "quality"),
    (lambda: Affine(padding="wrap"), ValueError, "padding"),
    (lambda: Affine(scale=0.0), ValueError, "scale"),
    (lambda: Compose([Quantize(), "blur"]), TypeError, "Transform"),
    (lambda: print_and_photograph(3.0), ValueError, "strength"),
    (lambda: create_transform("sepia"), ValueError, "unknown transform"),
    (lambda: physical_attacks(["fgsm", "cw"]), ValueError, "unknown attack"),
])
def test_bad_parameters_are_rejected(make, err, match):  # type: ignore[no-untyped-def]
    with pytest.raises(err, match=match):
        make()


@pytest.mark.parametrize("attack,match", [
    (EOT(samples=0), "samples"), (EOT(steps=0), "steps"), (EOT(loss="hinge"), "loss"),
    (EOT(transform="photo"), "Transform"), (ILLC(steps=0), "steps"),
    (EOT(loss="cw", kappa=0), "kappa"), (EOT(kappa=5.0), "loss='cw' only"),
    (EOT(average="median"), "average"), (EOT(schedule="linear"), "schedule"),
    (EOT(select="last"), "select"),
])
def test_bad_attack_settings_are_rejected(attack, match):  # type: ignore[no-untyped-def]
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises((ValueError, TypeError), match=match):
        attack(model, x, torch.zeros(2, dtype=torch.long), threat=ThreatModel("linf", 0.1))


def test_bad_images_are_rejected():
    with pytest.raises(TypeError, match="uint8|floating"):
        Quantize()((images() * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="N, C, H, W"):
        Quantize()(torch.rand(3, 4, 4))


# ----------------------------------------------------------------------------- destruction rate


def test_destruction_rate_by_hand():
    # image:            0  1  2  3  4  5
    clean = torch.tensor([1, 1, 1, 1, 0, 1]).bool()
    adv = torch.tensor([0, 0, 0, 1, 0, 0]).bool()
    transformed = torch.tensor([1, 0, 1, 1, 1, 0]).bool()
    d = destruction_rate_from_predictions(clean, adv, transformed)
    # eligible: clean correct and adversarial wrong = {0, 1, 2, 5}; destroyed among them = {0, 2}
    assert (d.eligible, d.destroyed, d.rate) == (4, 2, 0.5)
    assert d.destroyed_mask.tolist() == [True, False, True, False, False, False]
    empty = destruction_rate_from_predictions(clean[3:4], adv[3:4], transformed[3:4])
    assert empty.eligible == 0 and math.isnan(empty.rate) and empty.to_dict()["rate"] is None
    with pytest.raises(ValueError, match="same length"):
        destruction_rate_from_predictions(clean, adv[:3], transformed)


class Brightness(nn.Module):
    """Class 1 when the mean pixel is above 0.5: the answers are easy to work out by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1) * 10


def test_destruction_rate_with_a_model_by_hand():
    model = Brightness().eval()
    x = torch.tensor([0.8, 0.7, 0.2, 0.9]).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    y = torch.tensor([1, 1, 0, 0])  # image 3 is misclassified when clean
    x_adv = torch.tensor([0.45, 0.3, 0.6, 0.1]).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    # adversarial predictions 0, 0, 1, 0: images 0, 1, 2 are eligible (3 is wrong when clean).
    # brightness +0.1: 0.55 -> class 1 (destroyed), 0.4 -> 0 (survives), 0.7 -> 1 (survives)
    d = destruction_rate(model, x, y, x_adv, BrightnessContrast(brightness=0.1))
    assert (d.eligible, d.destroyed) == (3, 1)
    assert math.isclose(d.rate, 1 / 3)


# ----------------------------------------------------------------------------- attacks


def test_illc_targets_the_least_likely_class():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    y = model(x).argmax(1).detach()
    ll = model(x).argmin(1).detach()
    r = ILLC(steps=20)(model, x, y, threat=ThreatModel("linf", 1.0))
    assert torch.equal(r.info["targets"], ll)
    assert torch.equal(r.logits.argmax(1), ll)  # a big budget reaches y_LL
    assert torch.equal(r.success, ll != y)
    with pytest.raises(ValueError, match="least-likely"):
        ILLC()(model, x, TargetedMisclassification(ll), threat=ThreatModel("linf", 0.1))
    assert isinstance(create_attack("illc"), ILLC) and isinstance(create_attack("eot"), EOT)


@pytest.fixture(scope="module")
def digits_mlp(digits_train, digits_settings):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = create_model("mlp", **digits_settings)
    fit(model, digits_train.images, digits_train.labels,
        TrainConfig(epochs=8, batch_size=64, lr=3e-3, seed=0))
    return model.eval()


def test_eot_survives_transformations_better_than_bim(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=120).tensors()
    t = print_and_photograph()
    threat = ThreatModel("linf", 0.1)
    g = torch.Generator().manual_seed(0)
    bim = BIM(steps=10, loss="cw")(digits_mlp, x, y, threat=threat)
    eot = EOT(transform=t, samples=8, steps=10, loss="cw")(digits_mlp, x, y, threat=threat, generator=g)
    assert bool(threat.contains(eot.x_adv, x).all())
    assert bool((eot.passes == 80).all())
    rate = {}
    for name, r in (("bim", bim), ("eot", eot)):
        d = destruction_rate(digits_mlp, x, y, r.x_adv, t, generator=torch.Generator().manual_seed(5))
        assert d.eligible >= 30
        rate[name] = d.rate
    # measured: BIM 0.25 (15 of 60 destroyed), EOT 0.106 (5 of 47)
    assert rate["eot"] < 0.6 * rate["bim"], rate
    assert float(eot.info["expected_success"].mean()) > 0.5


def test_eot_options_margin_logits_cosine_and_digital_first(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=60).tensors()
    t = print_and_photograph()
    threat = ThreatModel("linf", 0.1)

    def run(**kw):  # type: ignore[no-untyped-def]
        return EOT(transform=t, samples=4, steps=6, loss="cw", **kw)(
            digits_mlp, x, y, threat=threat, generator=torch.Generator().manual_seed(0))

    base = run()
    again = run()
    assert torch.equal(base.x_adv, again.x_adv)  # seeded
    for kw in ({"kappa": 2.0}, {"average": "logits"}, {"schedule": "cosine"}):
        r = run(**kw)
        assert bool(threat.contains(r.x_adv, x).all())
        assert not torch.equal(r.x_adv, base.x_adv), kw  # the option changes the iterates
    assert run(schedule="cosine").info["step_size"] == base.info["step_size"]
    # the same iterates ranked digital success first: never fewer digital successes
    dig = run(select="digital_first")
    assert int(dig.success.sum()) >= int(base.success.sum())
    assert bool((dig.forwards > base.forwards).all())  # one clean forward per recorded iterate
    # a clipped margin stops at kappa: the objective of copies already fooled by kappa is flat
    logits = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    from advlab.losses import cw_margin
    assert cw_margin(logits, torch.tensor([0, 0]), kappa=2.0).tolist() == [2.0, 1.0]


def test_destruction_experiment_table(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=60).tensors()
    transforms = {"blur": GaussianBlur(sigma=1.0), "noise": GaussianNoise(std=0.1)}
    attacks = {"fgsm": FGSM(), "illc": ILLC(steps=5)}

    def run():  # type: ignore[no-untyped-def]
        return destruction_experiment(digits_mlp, x, y, attacks, [0.1, 0.2], transforms,
                                      generator=torch.Generator().manual_seed(0), keep_examples=3)

    rep = run()
    assert len(rep.rows) == 2 * 2 * 2
    assert {(r.attack, r.eps, r.transform) for r in rep.rows} == {
        (a, e, t) for a in attacks for e in (0.1, 0.2) for t in transforms}
    for r in rep.rows:
        assert r.rate is None or 0 <= r.rate <= 1
        assert r.destroyed <= r.eligible
    # the same seed gives the same table; the noise rows are evaluated on identical draws
    assert [r.rate for r in run().rows] == [r.rate for r in rep.rows]
    assert rep.examples[("fgsm", 0.1)]["x_t"].shape == (3, *x.shape[1:])
    assert rep.to_dict()["n"] == 60
    with pytest.raises(ValueError, match="transform"):
        destruction_experiment(digits_mlp, x, y, attacks, [0.1], {})


# ----------------------------------------------------------------------------- CLI


def test_cli_destruction_table(tmp_path, digits_mlp):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from advlab.checkpoint import save_model
    from advlab.cli.app import app

    save_model(tmp_path / "model", digits_mlp)
    out = tmp_path / "d.json"
    r = CliRunner().invoke(app, ["physical", "destruction", "--model", str(tmp_path / "model"),
                                 "--dataset", "digits", "--n", "40", "--attacks", "fgsm,eot",
                                 "--eps", "0.2", "--transforms", "blur,photo", "--steps", "2",
                                 "--eot-samples", "2", "--out", str(out),
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    import json

    d = json.loads(out.read_text())
    assert d["n"] == 40 and len(d["rows"]) == 2 * 1 * 2
    assert {row["transform"] for row in d["rows"]} == {"blur", "photo"}
    bad = CliRunner().invoke(app, ["physical", "destruction", "--model", str(tmp_path / "model"),
                                   "--dataset", "digits", "--transforms", "sepia"])
    assert isinstance(bad.exception, ValueError) and "sepia" in str(bad.exception)


def test_gaussian_noise_straight_through_clip():
    x = torch.zeros(4, 1, 6, 6)
    x[:, :, 2:4, 2:4] = 1.0  # black background, white square: much of each copy is clipped
    outs, grads = [], []
    for st in (False, True):
        t = GaussianNoise(0.3, straight_through_clip=st)
        xg = x.clone().requires_grad_(True)
        y = t(xg, generator=torch.Generator().manual_seed(0))
        (g,) = torch.autograd.grad(y.sum(), xg)
        outs.append(y.detach())
        grads.append(g)
        assert t.exact_gradient is (not st) and t.settings()["straight_through_clip"] is st
    assert torch.equal(outs[0], outs[1]) and 0 <= float(outs[0].min()) and float(outs[0].max()) <= 1
    clipped = (outs[0] == 0) | (outs[0] == 1)
    assert bool(clipped.any()) and bool((~clipped).any())
    # exact: the clip blocks the gradient of clipped pixels; straight-through: identity everywhere
    assert torch.equal(grads[0], (~clipped).float())
    assert torch.equal(grads[1], torch.ones_like(x))
    with pytest.raises(TypeError, match="straight_through_clip"):
        GaussianNoise(0.3, straight_through_clip=1)  # type: ignore[arg-type]
