"""Tests for advlab.defenses.trainer: the fit loop, pass counting, checkpoints and resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from advlab.checkpoint import META_FILE, STATE_FILE, CheckpointError, load_model
from advlab.data import ImageDataset
from advlab.defenses import EpochLog, TrainConfig, accuracy, fit
from advlab.models import create_model

N_SMALL = 300  # not a multiple of the batch size: the last batch is short
CFG = TrainConfig(epochs=3, batch_size=64, lr=1e-2, seed=3)

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def small(digits_train: ImageDataset) -> ImageDataset:
    return digits_train.subset(limit=N_SMALL)


def _mlp(seed: int = 0, **extra: object) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[16], **extra)


def _equal_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _stop_after(epoch: int):  # type: ignore[no-untyped-def]
    def on_epoch(e: EpochLog) -> None:
        if e.epoch == epoch:
            raise KeyboardInterrupt

    return on_epoch


def test_softmax_on_digits_learns(
    digits_train: ImageDataset, digits_test: ImageDataset, digits_settings: dict[str, object]
) -> None:
    torch.manual_seed(0)
    model = create_model("softmax", **digits_settings)
    test = (digits_test.images, digits_test.labels)
    before = accuracy(model.eval(), *test)
    result = fit(model, digits_train.images, digits_train.labels,
                 TrainConfig(epochs=3, batch_size=64, lr=1e-2), test=test)
    assert before < 0.3
    assert [h.epoch for h in result.history] == [1, 2, 3]
    final = result.history[-1].test_acc
    assert final is not None and final > 0.9  # about 0.94 with these settings
    assert final == accuracy(model, *test)
    assert result.history[-1].loss < result.history[0].loss
    assert not model.training  # fit leaves the model in eval mode
    assert result.resumed_from == 0


def test_pass_counting_and_callbacks(small: ImageDataset) -> None:
    batches: list[tuple[int, int, int]] = []
    epochs: list[EpochLog] = []
    model = _mlp()
    result = fit(model, small.images, small.labels, replace(CFG, epochs=2),
                 on_batch=lambda ep, step, steps, loss, acc: batches.append((ep, step, steps)),
                 on_epoch=epochs.append)
    steps = -(-N_SMALL // 64)
    assert batches == [(ep, s, steps) for ep in range(2) for s in range(1, steps + 1)]
    assert [e.passes for e in result.history] == [N_SMALL, N_SMALL]
    assert result.passes == 2 * N_SMALL
    assert epochs == result.history
    assert all(h.test_acc is None for h in result.history)
    assert result.to_dict()["passes"] == 2 * N_SMALL


def test_uint8_and_float_images_train_identically(small: ImageDataset) -> None:
    a, b = _mlp(), _mlp()
    fit(a, small.images, small.labels, replace(CFG, epochs=1))
    fit(b, small.images.float() / 255, small.labels, replace(CFG, epochs=1))
    assert _equal_weights(a, b)


def test_same_seed_same_weights_other_seed_differs(small: ImageDataset) -> None:
    a, b, c = _mlp(), _mlp(), _mlp()
    fit(a, small.images, small.labels, replace(CFG, epochs=1))
    fit(b, small.images, small.labels, replace(CFG, epochs=1))
    fit(c, small.images, small.labels, replace(CFG, epochs=1, seed=CFG.seed + 1))
    assert _equal_weights(a, b)
    assert not _equal_weights(a, c)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_interrupted_run_resumes_to_identical_weights(
    small: ImageDataset, tmp_path: Path, optimizer: str
) -> None:
    cfg = replace(CFG, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else CFG.lr)
    full = _mlp()
    ref = fit(full, small.images, small.labels, cfg, checkpoint_dir=tmp_path / "full")

    ckpt = tmp_path / "interrupted"
    seen: dict[str, torch.Tensor] = {}

    def stop(e: EpochLog) -> None:
        seen.update({k: v.clone() for k, v in part.state_dict().items()})
        raise KeyboardInterrupt

    part = _mlp()
    with pytest.raises(KeyboardInterrupt):
        fit(part, small.images, small.labels, cfg, checkpoint_dir=ckpt, on_epoch=stop)
    # the checkpoint of epoch 1 is on disk and holds the weights after epoch 1
    assert json.loads((ckpt / META_FILE).read_text())["epochs_done"] == 1
    saved = load_model(ckpt).state_dict()
    assert all(torch.equal(saved[k], seen[k]) for k in seen)

    resumed = _mlp(seed=123)  # different init: everything must come from the checkpoint
    torch.manual_seed(999)  # a fresh process has a different global RNG state
    res = fit(resumed, small.images, small.labels, cfg, checkpoint_dir=ckpt, resume=True)
    assert res.resumed_from == 1
    assert _equal_weights(resumed, full)
    assert res.passes == ref.passes == 3 * N_SMALL
    assert [h.epoch for h in res.history] == [1, 2, 3]
    assert [h.loss for h in res.history] == [h.loss for h in ref.history]
    assert _equal_weights(load_model(ckpt), full)


def test_more_epochs_continue_a_finished_run(small: ImageDataset, tmp_path: Path) -> None:
    full = _mlp()
    fit(full, small.images, small.labels, CFG)
    first = _mlp()
    fit(first, small.images, small.labels, replace(CFG, epochs=2), checkpoint_dir=tmp_path)
    more = _mlp(seed=5)
    res = fit(more, small.images, small.labels, CFG, checkpoint_dir=tmp_path, resume=True)
    assert res.resumed_from == 2 and len(res.history) == 3
    assert _equal_weights(more, full)


def test_resume_with_dropout_is_identical(small: ImageDataset, tmp_path: Path) -> None:
    def maxout() -> nn.Module:
        torch.manual_seed(0)  # what the CLI does at the start of every run
        return create_model("maxout", in_shape=(1, 8, 8), hidden=[16], pieces=2, dropout=0.5)

    full = maxout()
    fit(full, small.images, small.labels, CFG)
    part = maxout()
    with pytest.raises(KeyboardInterrupt):
        fit(part, small.images, small.labels, CFG, checkpoint_dir=tmp_path,
            on_epoch=_stop_after(1))
    resumed = maxout()  # a new process: seeded again, then resumed
    fit(resumed, small.images, small.labels, CFG, checkpoint_dir=tmp_path, resume=True)
    assert _equal_weights(resumed, full)


def test_resume_with_other_settings_is_refused(small: ImageDataset, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(_mlp(), small.images, small.labels, CFG, checkpoint_dir=tmp_path,
            on_epoch=_stop_after(1))
    state = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="train_config differs"):
        fit(_mlp(), small.images, small.labels, replace(CFG, lr=CFG.lr * 2),
            checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="n_train differs"):
        fit(_mlp(), small.images[:-1], small.labels[:-1], CFG, checkpoint_dir=tmp_path,
            resume=True)
    with pytest.raises(CheckpointError, match="does not match the model"):
        other = create_model("mlp", in_shape=(1, 8, 8), hidden=[8])
        fit(other, small.images, small.labels, CFG, checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / STATE_FILE).read_bytes() == state  # refused resumes write nothing


def test_resume_needs_something_to_resume(small: ImageDataset, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(_mlp(), small.images, small.labels, CFG, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="checkpoint directory"):
        fit(_mlp(), small.images, small.labels, CFG, resume=True)


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"batch_size": 0}, {"optimizer": "rmsprop"}, {"lr": 0.0}, {"lr": -1.0},
])
def test_bad_config_raises(small: ImageDataset, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fit(_mlp(), small.images, small.labels, replace(CFG, **bad))  # type: ignore[arg-type]


def test_bad_data_raises(small: ImageDataset) -> None:
    with pytest.raises(ValueError, match="images but"):
        fit(_mlp(), small.images, small.labels[:-1], CFG)
    with pytest.raises(ValueError, match="empty"):
        fit(_mlp(), small.images[:0], small.labels[:0], CFG)
