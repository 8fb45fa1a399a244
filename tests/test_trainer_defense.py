"""The fit loop with defenses: learning curves, LR schedules, exact resume, CLI validation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from advlab.checkpoint import STATE_FILE, CheckpointError, read_metadata
from advlab.cli.app import app
from advlab.data import ImageDataset
from advlab.defenses import (
    CurveConfig,
    FastFGSMTraining,
    FGSMTraining,
    LRSchedule,
    ScheduledTrainConfig,
    fit,
    learning_curve_point,
)
from advlab.models import create_model

CFG = ScheduledTrainConfig(epochs=3, batch_size=64, lr=1e-2, seed=3, lr_schedule="cyclic")


@pytest.fixture(scope="module")
def small(digits_train: ImageDataset) -> ImageDataset:
    return digits_train.subset(limit=200)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[16])


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- schedules


def test_cyclic_schedule_is_a_triangle() -> None:
    s = LRSchedule("cyclic", 0.1, total_steps=10, peak=0.4)
    lrs = [s.lr_at(t) for t in range(10)]
    assert lrs[3] == pytest.approx(0.1)  # position 4/10 = the peak
    assert lrs[-1] == pytest.approx(0.0)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:4], strict=False))
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    step = LRSchedule("step", 1.0, total_steps=100)
    assert [step.lr_at(t) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = LRSchedule("cosine", 1.0, total_steps=100)
    assert cos.lr_at(0) == pytest.approx(1.0) and cos.lr_at(50) == pytest.approx(0.5)


def test_schedule_drives_the_optimizer_and_is_logged(small: ImageDataset) -> None:
    res = fit(_mlp(), small.images, small.labels, CFG)
    steps = -(-200 // 64)
    sched = LRSchedule("cyclic", CFG.lr, 3 * steps, CFG.lr_peak)
    assert [h.extra["lr"] for h in res.history] == pytest.approx(
        [sched.lr_at((e + 1) * steps - 1) for e in range(3)])
    assert res.history[-1].extra["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(_mlp(), small.images, small.labels, replace(CFG, lr_schedule="exponential"))


# ---------------------------------------------------------------- learning curves


def test_curves_are_logged_and_do_not_change_training(
    small: ImageDataset, digits_test: ImageDataset
) -> None:
    test = (digits_test.images[:100], digits_test.labels[:100])
    obj = FGSMTraining(eps=0.1)
    a, b = _mlp(), _mlp()
    ra = fit(a, small.images, small.labels, CFG, objective=obj, test=test)
    rb = fit(b, small.images, small.labels, CFG, objective=obj, test=test,
             curves=CurveConfig(eps=0.1, pgd_steps=5, n=None))
    assert _equal(a, b)
    for h in rb.history:
        e = h.extra
        assert h.test_acc is not None
        assert e["clean_error"] == pytest.approx(1 - h.test_acc)  # same (full) test set
        # an adversarial error counts every clean error too
        assert e["fgsm_error"] >= e["clean_error"] and e["pgd_error"] >= e["clean_error"]
    point = learning_curve_point(b, *test, CurveConfig(eps=0.1, pgd_steps=5, n=None))
    assert point["clean_error"] == pytest.approx(rb.history[-1].extra["clean_error"])
    assert point["fgsm_error"] == pytest.approx(rb.history[-1].extra["fgsm_error"])
    series = rb.curves()
    assert series["epoch"] == [1, 2, 3] and len(series["pgd_error"]) == 3
    assert series["passes"][-1] == rb.passes == 3 * 3 * 200
    assert "fgsm_error" not in ra.history[0].extra
    with pytest.raises(ValueError, match="test data"):
        fit(_mlp(), small.images, small.labels, CFG, curves=CurveConfig(eps=0.1))


# ---------------------------------------------------------------- resume


def test_fast_at_with_cyclic_lr_resumes_to_identical_weights(
    small: ImageDataset, digits_test: ImageDataset, tmp_path: Path
) -> None:
    test = (digits_test.images[:60], digits_test.labels[:60])
    obj = FastFGSMTraining(eps=0.1)  # draws random starts from the loop's generator
    curves = CurveConfig(eps=0.1, pgd_steps=3, n=None)
    full = _mlp()
    ref = fit(full, small.images, small.labels, CFG, objective=obj, test=test, curves=curves)

    def stop(epoch: int, step: int, steps: int, loss: float, acc: float) -> None:
        if (epoch, step) == (1, 2):  # killed in the middle of the second epoch
            raise KeyboardInterrupt

    ckpt = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(_mlp(), small.images, small.labels, CFG, objective=obj, test=test, curves=curves,
            checkpoint_dir=ckpt, on_batch=stop)
    meta = read_metadata(ckpt)
    assert meta["epochs_done"] == 1 and "pgd_error" in meta["history"][0]["extra"]
    resumed = _mlp(seed=42)
    torch.manual_seed(999)
    res = fit(resumed, small.images, small.labels, CFG, objective=obj, test=test, curves=curves,
              checkpoint_dir=ckpt, resume=True)
    assert res.resumed_from == 1
    assert _equal(resumed, full)
    assert [h.extra for h in res.history] == [h.extra for h in ref.history]
    assert res.passes == ref.passes == 3 * 2 * 200

    state = (ckpt / STATE_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="schedule"):
        fit(_mlp(), small.images, small.labels, replace(CFG, epochs=5), objective=obj,
            checkpoint_dir=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="objective differs"):
        fit(_mlp(), small.images, small.labels, CFG, objective=FastFGSMTraining(eps=0.2),
            checkpoint_dir=ckpt, resume=True)
    assert (ckpt / STATE_FILE).read_bytes() == state


# ---------------------------------------------------------------- CLI

runner = CliRunner()


def _train(tmp: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["train", "--dataset", "digits", "--model", "softmax",
                               "--out", str(tmp / "out"), *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--defense", "fgsm", "--eps", "-0.1"], "--eps must be"),
    (["--defense", "fgsm", "--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["--defense", "magic"], "unknown defense"),
    (["--defense", "pgd", "--steps", "0"], "--steps must be"),
    (["--defense", "trades", "--beta", "-1"], "--beta must be"),
    (["--defense", "vat", "--xi", "0"], "xi must be"),
    (["--defense", "fgsm", "--labels", "100"], "needs --defense vat"),
    (["--defense", "vat", "--labels", "5000"], "exceeds"),
    (["--defense", "vat", "--labels", "25"], "multiple"),
    (["--lr-schedule", "zigzag"], "lr_schedule"),
    (["--settings", "[1, 2"], "--settings"),
])
def test_bad_settings_fail_before_training(tmp_path: Path, args: list[str], message: str) -> None:
    result = _train(tmp_path, *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError), result.output
    assert message in str(result.exception)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_cli_adversarial_training_writes_curves(tmp_path: Path) -> None:
    result = _train(tmp_path, "--defense", "fgsm-rs", "--eps", "0.1", "--epochs", "2",
                    "--lr", "0.01", "--lr-schedule", "cyclic", "--curve-n", "60",
                    "--curve-steps", "3")
    assert result.exit_code == 0, result.output
    curves = json.loads((tmp_path / "out" / "curves.json").read_text())
    c = curves["curves"]
    assert c["epoch"] == [1, 2]
    assert set(c) >= {"clean_error", "fgsm_error", "pgd_error", "passes", "seconds", "lr"}
    assert c["passes"] == [2 * 1437, 4 * 1437]  # FGSM-RS: 2 passes per example
    assert curves["meta"]["objective"]["defense"] == "fgsm-rs"
    meta = read_metadata(tmp_path / "out")
    assert meta["objective"]["step_size"] is None and meta["objective"]["eps"] == 0.1
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("{")][-1]
    assert json.loads(line)["passes"] == 4 * 1437


def test_cli_semi_supervised_vat(tmp_path: Path) -> None:
    result = _train(tmp_path, "--defense", "vat", "--labels", "50", "--epochs", "1",
                    "--unlabeled-batch-size", "512", "--batch-size", "50")
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "out")
    assert meta["n_train"] == 50 and meta["n_unlabeled"] == 1437 - 50
    assert meta["labels"] == 50
    steps = -(-(1437 - 50) // 512)
    assert meta["passes"] == steps * 50 + (1437 - 50) * 2
