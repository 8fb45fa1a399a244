"""Tests for advlab.checkpoint: round trips, metadata, corruption, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import advlab
from advlab.checkpoint import (
    META_FILE,
    MODEL_FILE,
    CheckpointError,
    atomic_write_text,
    load_model,
    read_metadata,
    save_model,
)
from advlab.models import create_model

pytestmark = pytest.mark.usefixtures("no_network")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[16],
                        mean=0.3, std=0.2)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in (MODEL_FILE, META_FILE))


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _model()
    weights = save_model(tmp_path / "ckpt", model, {"dataset": "digits"})
    assert weights == tmp_path / "ckpt" / MODEL_FILE
    assert _leftovers(tmp_path / "ckpt") == []
    loaded = load_model(tmp_path / "ckpt")
    assert type(loaded) is type(model)
    assert not loaded.training
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    # the weights file itself is accepted too
    assert torch.equal(load_model(weights)(x), loaded(x))


@pytest.mark.parametrize("name", ["softmax", "logistic", "cnn", "maxout", "rbf"])
def test_round_trip_every_model(tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    k = 2 if name == "logistic" else 10
    model = create_model(name, in_shape=(1, 8, 8), num_classes=k).eval()
    save_model(tmp_path, model)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), load_model(tmp_path)(x))


def test_metadata_json_and_embedded_copy_agree(tmp_path: Path) -> None:
    save_model(tmp_path, _model(), {"dataset": "digits", "seed": 7})
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["model"] == "mlp"
    assert meta["settings"] == {"in_shape": [1, 8, 8], "num_classes": 10, "hidden": [16],
                                "mean": 0.3, "std": 0.2}
    assert meta["advlab_version"] == advlab.__version__
    assert meta["dataset"] == "digits" and meta["seed"] == 7
    with safe_open(str(tmp_path / MODEL_FILE), framework="pt") as f:
        embedded = json.loads(f.metadata()["advlab"])
    assert embedded == meta
    assert read_metadata(tmp_path) == meta
    assert load_model(tmp_path).advlab_meta == meta


def test_only_registry_models_can_be_saved(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="create_model"):
        save_model(tmp_path, nn.Linear(3, 2))
    assert not (tmp_path / MODEL_FILE).exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "nothing-here")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_weights_raise_checkpoint_error(tmp_path: Path, damage: str) -> None:
    save_model(tmp_path, _model())
    path = tmp_path / MODEL_FILE
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as info:
        load_model(tmp_path)
    assert isinstance(info.value, ValueError)
    with pytest.raises(CheckpointError):
        read_metadata(tmp_path)


def test_safetensors_without_advlab_metadata(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / MODEL_FILE))
    with pytest.raises(CheckpointError, match="no advlab metadata"):
        load_model(tmp_path)


def test_weights_that_do_not_match_the_settings(tmp_path: Path) -> None:
    save_model(tmp_path, _model())
    path = tmp_path / MODEL_FILE
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["advlab"])
    meta["settings"]["hidden"] = [32]  # the stored tensors are for hidden=[16]
    save_file(load_file(str(path)), str(path), metadata={"advlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not match model 'mlp'"):
        load_model(tmp_path)


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
def test_failed_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str, exc: BaseException
) -> None:
    save_model(tmp_path, _model(0), {"run": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(type(exc)):
        save_model(tmp_path, _model(1), {"run": 2})
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same files (no temporaries left), same bytes
    assert read_metadata(tmp_path)["run"] == 1
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path)(x), _model(0).eval()(x))


def test_atomic_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
