"""``advlab eval --html`` / ``advlab.evaluate``: the one-file robustness report, and
``--device`` / ``--mean --std`` on the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from test_bad_input import place, run  # noqa: F401 - shared fixtures
from test_report_browser import IMAGES_JS, browser  # noqa: F401

import advlab
from advlab.attacks import FGSM
from advlab.evaluation import evaluate as evaluate_one
from advlab.models.normalize import Normalized
from advlab.threat import ThreatModel


@pytest.fixture(scope="module")
def digits_small(digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.tensors()
    return x[:40], y[:40]


def test_library_report(trained_softmax, digits_small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_small
    threat = ThreatModel("linf", 0.05)
    rep = advlab.evaluate(trained_softmax, x, y, threat=threat, attacks=FGSM(),
                          eps_curve=[0, 0.05, 0.1], device="cpu")
    ref = evaluate_one(trained_softmax, x, y, FGSM(), threat)
    assert rep.robust_accuracy == pytest.approx(ref.robust_acc)
    assert rep.clean_accuracy == pytest.approx(ref.clean_acc)
    assert rep.per_sample["robust_correct"].shape == (40,)
    assert rep.curve["eps"] == [0, 0.05, 0.1] and rep.curve["accuracy"][0] == pytest.approx(ref.clean_acc)
    assert rep.curve["accuracy"][2] <= rep.curve["accuracy"][1]
    d = json.loads(rep.to_json(tmp_path / "r.json"))
    assert d["robust_acc"] == rep.robust_accuracy and (tmp_path / "r.json").is_file()
    html = rep.to_html(tmp_path / "r.html")
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "src=\"http" not in html and "<script src" not in html  # self-contained
    assert len(re.findall(r"data:image/png;base64,", html)) >= 2  # curve and examples
    assert f"{rep.robust_accuracy:.1%}" in html


def test_cli_html_report_in_chromium(run, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    code, out, err = run("eval", "ckpt", "--dataset", "digits", "--limit", "30", "--attacks", "fast",
                         "--eps", "0.05", "--html", str(tmp_path / "r.html"), "--device", "cpu")
    assert code == 0, err
    d = json.loads(out.strip().splitlines()[-1])
    html = (tmp_path / "r.html").read_text()
    for words in ("Robust accuracy after each attack", "apgd-ce", "advlab eval ckpt", "seed",
                  f"{d['robust_acc']:.1%}"):
        assert words in html, words
    browser.open((tmp_path / "r.html").as_uri())
    imgs = browser.evaluate(IMAGES_JS)
    assert len(imgs) >= 2
    assert all(i["complete"] and i["w"] > 0 for i in imgs), imgs
    assert browser.errors() == []


def test_cli_mean_std_wrap_a_model_that_expects_normalised_inputs(run, place: Path, trained_softmax) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A model trained on (x - 0.5) / 0.25 inputs, given --mean 0.5 --std 0.25, scores like the
    [0, 1] model it was built from."""

    class Expects(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = trained_softmax

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.inner(z * 0.25 + 0.5)

    wrapped = Normalized(Expects(), [0.5], [0.25])
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(wrapped(x), trained_softmax(x), atol=1e-6)
    torch.jit.save(torch.jit.trace(Expects().eval(), torch.rand(2, 1, 8, 8)), str(place / "norm.pt"))
    args = ["--dataset", "digits", "--limit", "40", "--attack", "fgsm", "--eps", "0.05"]
    code, out, err = run("eval", "norm.pt", *args, "--mean", "0.5", "--std", "0.25")
    assert code == 0, err
    code2, out2, err2 = run("eval", "ckpt", *args)
    assert code2 == 0, err2
    a, b = json.loads(out.strip().splitlines()[-1]), json.loads(out2.strip().splitlines()[-1])
    assert a["clean_acc"] == b["clean_acc"] and a["robust_acc"] == pytest.approx(b["robust_acc"], abs=0.03)
    code, _, err = run("eval", "norm.pt", *args, "--mean", "0.5")
    assert code == 2 and "go together" in err


def test_cli_device_is_checked_before_loading(run, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run("eval", "does-not-exist", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and "cpu" in err
    code, _, err = run("eval", "does-not-exist", "--device", "tpu")
    assert code == 2 and "not a device" in err
    code, _, err = run("lecture", "--device", "cuda", "--dataset", "nosuchset", "--out", "r")
    assert code == 2 and "no CUDA GPU" in err and not Path("r").exists()
