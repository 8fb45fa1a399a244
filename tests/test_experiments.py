"""The experiments layer: one model cache (hit, miss, versioned key, corrupt entry, resume),
the recipes as plain data, and no change to the caller's global RNG."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

import advlab.experiments.cache as cache_mod
from advlab.checkpoint import META_FILE, MODEL_FILE, STATE_FILE
from advlab.data import ImageDataset, normalization_stats
from advlab.defenses import FGSMTraining, TrainConfig, fit
from advlab.experiments import (
    MODEL_RECIPES,
    ExperimentContext,
    Recipe,
    get_or_train,
    init_model,
    lecture_recipe,
)
from advlab.experiments.recipes import adv_curves_recipe, half_mlp_recipe
from advlab.models import create_model

SMALL = Recipe(name="tiny", model="mlp", settings={"hidden": [16]}, train={"epochs": 2, "lr": 1e-2},
               seed=3, limit=200)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for v in model.state_dict().values()]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))


def test_normalization_stats_matches_the_inline_formula(digits_train: ImageDataset):
    mean, std = normalization_stats(digits_train.images)
    x = digits_train.images.float() / 255
    assert mean == x.mean(dim=(0, 2, 3)).tolist()
    assert std == x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    const = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    c_mean, c_std = normalization_stats(const)
    assert c_mean == [0.0, 0.0] and c_std == pytest.approx([1e-3, 1e-3])  # never zero
    with pytest.raises(ValueError, match="non-empty"):
        normalization_stats(torch.zeros(0, 1, 2, 2))
    with pytest.raises(TypeError):
        normalization_stats([[1.0]])  # type: ignore[arg-type]


def test_same_weights_as_seeding_and_training_by_hand(digits_train: ImageDataset, tmp_path: Path):
    data = digits_train.subset(limit=200)
    mean, std = normalization_stats(data.images)
    torch.manual_seed(3)
    ref = create_model("mlp", hidden=[16], in_shape=list(data.shape), num_classes=data.num_classes,
                       mean=mean, std=std)
    fit(ref, data.images, data.labels, TrainConfig(epochs=2, lr=1e-2, seed=3))
    got = get_or_train(SMALL, digits_train, tmp_path)
    assert not got.cached and _same(got.model, ref)
    assert [h["epoch"] for h in got.history] == [1, 2]


def test_cache_hit_miss_and_no_global_rng_change(digits_train: ImageDataset, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    messages: list[str] = []
    first = get_or_train(SMALL, digits_train, tmp_path, progress=messages.append)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched
    assert not first.cached and (first.path / META_FILE).is_file()
    assert first.path.parent == tmp_path and first.path.name.startswith("digits-tiny-")
    assert any("training" in m for m in messages)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(cache_mod, "fit", no_training)
    second = get_or_train(SMALL, digits_train, tmp_path)
    assert second.cached and second.path == first.path and _same(second.model, first.model)
    assert second.history == first.history
    assert not second.model.training
    assert torch.equal(torch.get_rng_state(), state)
    # another recipe is a miss
    with pytest.raises(AssertionError, match="cache hit"):
        get_or_train(dataclasses.replace(SMALL, seed=4), digits_train, tmp_path)


@pytest.mark.parametrize("change", [
    {"name": "other"}, {"model": "cnn"}, {"settings": {"hidden": [17]}}, {"train": {"epochs": 3, "lr": 1e-2}},
    {"train": {"epochs": 2, "lr": 1e-2, "batch_size": 64}}, {"seed": 4}, {"init_seed": 9},
    {"objective": lambda: FGSMTraining(eps=0.1)}, {"classes": [3, 7]}, {"offset": 10}, {"limit": 100},
    {"curves": {"eps": 0.1}},
])
def test_key_changes_with_every_recipe_field(change: dict[str, object]):
    base = SMALL.key({"dataset": "digits"})
    other = dataclasses.replace(SMALL, **change)
    if "name" in change:  # the name labels the entry's folder, it is not part of the key
        assert other.key({"dataset": "digits"}) == base
        return
    assert other.key({"dataset": "digits"}) != base
    assert SMALL.key({"dataset": "mnist"}) != base  # and the data description


def test_key_is_versioned(monkeypatch: pytest.MonkeyPatch):
    base = SMALL.key()
    monkeypatch.setattr(cache_mod, "RECIPE_VERSION", cache_mod.RECIPE_VERSION + 1)
    assert SMALL.key() != base
    monkeypatch.undo()
    monkeypatch.setattr(cache_mod, "__version__", "0.0.0-other")
    assert SMALL.key() != base


def test_every_field_is_in_the_description():
    described = set(SMALL.describe())
    for f in dataclasses.fields(Recipe):
        if f.name in ("name", "train", "seed"):  # seed lives in the train config
            continue
        assert f.name in described, f.name


def test_corrupt_entry_is_retrained(digits_train: ImageDataset, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture):
    first = get_or_train(SMALL, digits_train, tmp_path)
    (first.path / MODEL_FILE).write_bytes(b"not a safetensors file")
    (first.path / STATE_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="advlab.experiments.cache"):
        again = get_or_train(SMALL, digits_train, tmp_path)
    assert not again.cached and _same(again.model, first.model)
    assert "corrupt" in caplog.text
    assert get_or_train(SMALL, digits_train, tmp_path).cached  # repaired


def test_unreadable_train_state_is_retrained(digits_train: ImageDataset, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture):
    first = get_or_train(SMALL, digits_train, tmp_path)
    (first.path / META_FILE).unlink()
    (first.path / MODEL_FILE).unlink()
    (first.path / STATE_FILE).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="advlab.experiments.cache"):
        again = get_or_train(SMALL, digits_train, tmp_path)
    assert "cannot resume" in caplog.text and _same(again.model, first.model)


def test_unfinished_entry_resumes(digits_train: ImageDataset, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch):
    full = get_or_train(SMALL, digits_train, tmp_path / "a")
    one = dataclasses.replace(SMALL, train={"epochs": 1, "lr": 1e-2})
    # an interrupted two-epoch run: one epoch written into the two-epoch entry
    partial = get_or_train(one, digits_train, tmp_path / "b")
    entry = tmp_path / "c" / full.path.name
    entry.parent.mkdir()
    partial.path.rename(entry)
    meta = json.loads((entry / META_FILE).read_text())
    assert meta["epochs_done"] == 1
    calls: list[bool] = []
    real_fit = cache_mod.fit

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(bool(kwargs.get("resume")))
        return real_fit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_mod, "fit", spy)
    resumed = get_or_train(SMALL, digits_train, tmp_path / "c")
    assert calls == [True]  # resumed, not retrained
    assert not resumed.cached and _same(resumed.model, full.model)  # as if never interrupted
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_recipe_validation():
    with pytest.raises(ValueError, match="seed"):
        Recipe(name="x", model="mlp", train={"seed": 1})
    with pytest.raises(ValueError, match="limit"):
        Recipe(name="x", model="mlp", limit=0)
    with pytest.raises(ValueError, match="offset"):
        Recipe(name="x", model="mlp", offset=-1)
    with pytest.raises(TypeError, match="factory"):
        Recipe(name="x", model="mlp", objective=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test="):
        get_or_train(dataclasses.replace(SMALL, curves={"eps": 0.1}), None, "/nonexistent")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        get_or_train({"model": "mlp"}, None, "/nonexistent")  # type: ignore[arg-type]


def test_scheduled_fields_pick_the_scheduled_config():
    r = lecture_recipe("cnn_fgsmrs", quick=True, seed=5)
    cfg = r.config()
    assert cfg.seed == 5 and cfg.lr_schedule == "cyclic" and cfg.epochs == 2
    assert type(lecture_recipe("cnn", quick=True).config()) is TrainConfig


def test_recipes_are_plain_read_only_data():
    with pytest.raises(TypeError):
        MODEL_RECIPES["new"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        MODEL_RECIPES["cnn"]["quick"] = {}  # type: ignore[index]
    for name in MODEL_RECIPES:
        r = lecture_recipe(name, quick=True)
        assert r.name == name and r.key() != lecture_recipe(name, quick=False).key()
    with pytest.raises(ValueError, match="known"):
        lecture_recipe("nope", quick=True)
    # importing the report sections adds nothing
    before = dict(MODEL_RECIPES)
    import advlab.reporting.sections  # noqa: F401

    assert dict(MODEL_RECIPES) == before
    a, b = half_mlp_recipe(0, 1000, True), half_mlp_recipe(1, 1000, True)
    assert (a.offset, a.limit, b.offset, b.limit) == (0, 500, 500, 500)
    assert adv_curves_recipe("adversarial", True).objective is not None
    assert adv_curves_recipe("clean", True).objective is None


def test_context_model_leaves_the_global_rng_alone(digits_train: ImageDataset,
                                                   digits_test: ImageDataset, tmp_path: Path):
    ctx = ExperimentContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    torch.manual_seed(77)
    state = torch.get_rng_state()
    m = ctx.model("softmax")
    assert torch.equal(torch.get_rng_state(), state)
    assert ctx.model("softmax") is m
    with pytest.raises(ValueError, match="no lecture recipe"):
        ctx.model("nope")
    other = torch.nn.Linear(2, 2).train()
    ctx.use_model("cnn", other)
    assert ctx.model("cnn") is other and not other.training


def test_init_model_matches_manual_seed_and_restores_state():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = init_model(11, lambda: torch.nn.Linear(4, 3))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(11)
    b = torch.nn.Linear(4, 3)
    assert _same(a, b)


def test_device_trains_there_and_hands_back_a_cpu_model(digits_train: ImageDataset, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    ref = get_or_train(SMALL, digits_train, tmp_path / "a")
    seen: list[tuple[str, str, str]] = []
    real_fit = cache_mod.fit

    def recording_fit(model, images, labels, cfg, **kw):  # type: ignore[no-untyped-def]
        seen.append((next(model.parameters()).device.type, images.device.type, labels.device.type))
        return real_fit(model, images, labels, cfg, **kw)

    monkeypatch.setattr(cache_mod, "fit", recording_fit)
    got = get_or_train(SMALL, digits_train, tmp_path / "b", device="cpu")
    assert seen == [("cpu", "cpu", "cpu")]
    assert _same(got.model, ref.model)  # the same seed gives the same weights
    assert got.path.name == ref.path.name  # the device is not part of the cache key
    assert next(got.model.parameters()).device.type == "cpu"



def test_building_models_whose_weights_are_replaced_leaves_the_global_rng_alone(tmp_path: Path):
    """Loading a checkpoint, wrapping a fitted linear scikit-learn model and fitting the
    model-based regressor build layers whose default weights are then replaced: none of them
    may read or advance the global RNG (a later section's numbers would depend on it)."""
    import numpy as np

    from advlab.analysis.model_based import fit_regressor
    from advlab.checkpoint import load_model, save_model
    from advlab.models.sklearn import LinearModule

    save_model(tmp_path / "m", create_model("mlp", hidden=[8], in_shape=[1, 2, 2], num_classes=3))
    x, y = torch.rand(8, 2), torch.rand(8)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    load_model(tmp_path / "m")
    LinearModule(np.ones((3, 4)), np.zeros(3), (1, 2, 2))
    fit_regressor(x, y, hidden=(4,), epochs=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)
