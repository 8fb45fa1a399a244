"""Detectors of adversarial examples (Metzen et al. 2017, Grosse et al. 2017) and the adaptive attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks.pgd import PGD
from advlab.defenses.detectors import (
    ExtraClassDetector,
    adaptive_pgd,
    detection_rate,
    threshold_at_fpr,
    train_extra_class_detector,
    train_feature_detector,
)
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections
from advlab.threat import ThreatModel

EPS = 0.25


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # tests may seed; library code never does
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def setup(digits_train, digits_test):  # type: ignore[no-untyped-def]
    xtr, ytr = digits_train.tensors()
    xte, yte = digits_test.tensors()
    model = _mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        for idx in torch.randperm(len(xtr), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    threat = ThreatModel("linf", EPS)
    pgd = PGD(steps=10)
    adv_tr = pgd(model, xtr, ytr, threat=threat, generator=torch.Generator().manual_seed(1)).x_adv
    x_cal, x, y = xte[:150], xte[150:], yte[150:]
    res = pgd(model, x, y, threat=threat, generator=torch.Generator().manual_seed(2))
    return model, xtr, ytr, adv_tr, x_cal, x, y, res, threat


def test_feature_detector_detects_pgd_and_adaptive_attack_evades_it(setup) -> None:  # type: ignore[no-untyped-def]
    model, xtr, ytr, adv_tr, x_cal, x, y, res, threat = setup
    assert float((model(x).argmax(1) == y).float().mean()) > 0.9
    det = train_feature_detector(model, xtr, ytr, adv_tr, layer="2", epochs=20,
                                 generator=torch.Generator().manual_seed(3))
    thr = threshold_at_fpr(det, x_cal, 0.05)
    assert float((det.score(x_cal) > thr).float().mean()) <= 0.06  # the operating point
    fooled = res.success
    assert fooled.float().mean() > 0.8
    pgd_rate = detection_rate(det, res.x_adv[fooled], thr)
    assert pgd_rate > 0.6  # chance is 0.05
    adv = adaptive_pgd(det, x, y, threat, threshold=thr, steps=30, generator=torch.Generator().manual_seed(4))
    ada_rate = detection_rate(det, adv.x_adv[adv.fooled], thr)
    assert ada_rate < pgd_rate and ada_rate < 0.3
    assert adv.fooled.float().mean() > 0.5
    # the ball and the box
    assert float((adv.x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(adv.x_adv.min()) >= 0 and float(adv.x_adv.max()) <= 1
    # reported flags agree with the models
    with torch.no_grad():
        assert torch.equal(adv.fooled, model(adv.x_adv).argmax(1) != y)
        assert torch.equal(adv.undetected, det.score(adv.x_adv) <= thr)
    # the head is new: the classifier's parameters are not among its trained ones
    assert not any(p is q for p in det.head.parameters() for q in model.parameters())


def test_extra_class_detector_keeps_classes_and_is_evaded(setup) -> None:  # type: ignore[no-untyped-def]
    model, xtr, ytr, adv_tr, x_cal, x, y, res, threat = setup
    before = [p.clone() for p in model.parameters()]
    det = train_extra_class_detector(model, xtr, ytr, adv_tr, 10, epochs=15,
                                     generator=torch.Generator().manual_seed(5))
    assert isinstance(det, ExtraClassDetector)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # a copy
    with torch.no_grad():
        assert det.model(x).shape[1] == 11
        assert float((det.classify(x).argmax(1) == y).float().mean()) > 0.85
    thr = threshold_at_fpr(det, x_cal, 0.05)
    pgd_rate = detection_rate(det, res.x_adv[res.success], thr)
    assert pgd_rate > 0.5
    adv = adaptive_pgd(det, x, y, threat, threshold=thr, steps=30, generator=torch.Generator().manual_seed(6))
    assert detection_rate(det, adv.x_adv[adv.fooled], thr) < pgd_rate
    assert float((adv.x_adv - x).abs().max()) <= EPS + 1e-6


def test_bad_inputs_raise(setup) -> None:  # type: ignore[no-untyped-def]
    model, xtr, ytr, adv_tr, x_cal, x, y, res, threat = setup
    with pytest.raises(ValueError, match="no layer"):
        train_feature_detector(model, xtr, ytr, adv_tr, layer="nope")
    det = ExtraClassDetector.from_classifier(model, 10)
    with pytest.raises(ValueError, match="fpr"):
        threshold_at_fpr(det, x_cal, 1.5)
    with pytest.raises(TypeError, match="ThreatModel"):
        adaptive_pgd(det, x, y, 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        adaptive_pgd(det, x, y[:-1], threat)


def test_section_runs_on_digits_and_renders(digits_train, digits_test, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    (sec,) = run_sections(ctx, ["detectors"])
    d = sec.data
    assert [len(c) for c in d["curves"].values()] == [d["rounds"] + 1] * 2
    for r in d["rows"]:
        assert r["adaptive_distortion"]["linf"] <= d["eps"] + 1e-4
        assert 0 <= r["adaptive_detection"] <= 1
    html = render_report("t", [sec], {"version": "0", "dataset": "digits", "mode": "quick",
                                      "seconds": 0.0, "seed": 0, "notices": [], "date": "today"})
    assert "fooled and undetected" in html and "data:image/png;base64" in html


def test_detectors_neither_read_nor_advance_the_global_rng(setup) -> None:  # type: ignore[no-untyped-def]
    """The same generator gives the same detectors whatever the global RNG holds, and the global
    RNG is left as it was (a section's numbers must not depend on the sections before it)."""
    model, xtr, ytr, adv_tr, *_ = setup
    heads, extra = [], []
    for global_seed in (0, 12345):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        det = train_feature_detector(model, xtr[:64], ytr[:64], adv_tr[:64], layer="2", epochs=1,
                                     generator=torch.Generator().manual_seed(3))
        ext = train_extra_class_detector(model, xtr[:64], ytr[:64], adv_tr[:64], 10, epochs=1,
                                         generator=torch.Generator().manual_seed(3))
        assert torch.equal(torch.get_rng_state(), before)
        heads.append([p.detach().clone() for p in det.head.parameters()])
        extra.append([p.detach().clone() for p in ext.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*heads, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(*extra, strict=True))
