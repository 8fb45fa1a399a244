"""Nothing executed: a crafted file in any cache or reader path is refused or ignored.

Each test plants a pickle whose ``__reduce__`` would create a marker file (the harmless
stand-in for ``os.system``) where advlab reads files that a user or an attacker could
place, and asserts that the marker never appears.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from advlab.checkpoint import CheckpointError, load_model, save_model
from advlab.data import DatasetError
from advlab.data.cifar10 import load_cifar10_batch, restricted_load
from advlab.evaluation import cascade
from advlab.experiments.context import ExperimentContext
from advlab.experiments.transfer import sklearn_model
from advlab.models import create_model
from advlab.threat import ThreatModel


class _Bomb:
    """Unpickling this creates ``marker`` (via ``pathlib.Path.touch``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def _bomb(marker: Path, protocol: int = 4) -> bytes:
    data = pickle.dumps({b"data": _Bomb(marker), b"labels": [0]}, protocol=protocol)
    # the bomb really works when unpickled the unsafe way (so the tests below can fail)
    probe = marker.with_name(marker.name + ".selftest")
    pickle.loads(pickle.dumps(_Bomb(probe)))
    assert probe.exists()
    probe.unlink()
    return data


def test_sklearn_cache_ignores_planted_files(digits_train, digits_test, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = ExperimentContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    model = sklearn_model(ctx, "lr")  # writes the cache file
    (cached,) = list(tmp_path.glob("*-sk-lr-*.safetensors"))
    marker = tmp_path / "pwned"
    for name in (cached.name, cached.with_suffix(".pkl").name):  # the file and the old name
        (tmp_path / name).write_bytes(_bomb(marker))
    again = sklearn_model(ctx, "lr")  # refused, refitted, rewritten
    assert not marker.exists()
    x = digits_test.tensors()[0][:50]
    assert torch.equal(again.predict(x) if hasattr(again, "predict") else again(x),
                       model.predict(x) if hasattr(model, "predict") else model(x))


def test_checkpoint_with_a_pickle_is_refused(tmp_path: Path) -> None:
    save_model(tmp_path / "ck", create_model("softmax", in_shape=(1, 8, 8), num_classes=10))
    marker = tmp_path / "pwned"
    (tmp_path / "ck" / "model.safetensors").write_bytes(_bomb(marker))
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "ck")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_refuse_code(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "data_batch_1").write_bytes(_bomb(marker, protocol))
    with pytest.raises(DatasetError):
        load_cifar10_batch(tmp_path / "data_batch_1")
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(_bomb(marker, protocol))
    assert not marker.exists()


def test_cascade_state_with_a_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = tmp_path / "run.state"
    state.write_bytes(_bomb(marker))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="not a cascade state file"):
        cascade(model, x, y, ["fgsm"], ThreatModel("linf", 0.1), state_path=state)
    assert not marker.exists()
    # with overwrite=True the file is replaced by a real state, still never unpickled
    cascade(model, x, y, ["fgsm"], ThreatModel("linf", 0.1), state_path=state, overwrite=True)
    assert not marker.exists()


def test_no_unsafe_loader_in_the_source() -> None:
    """Every pickle, torch.load and allow_pickle in src/ is one of the reviewed, safe uses."""
    root = Path(__file__).resolve().parents[1] / "src" / "advlab"
    allowed = {
        "data/cifar10.py",  # RestrictedUnpickler: an allow-list of globals
        "models/pretrained.py",  # torch.load(weights_only=True) of a package's own weights
        "models/external.py",  # detects pickles in order to refuse them
    }
    found = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        for needle in ("pickle.load", "pickle.Unpickler", "torch.load(", "allow_pickle=True", "joblib"):
            if needle in text:
                found.add(str(path.relative_to(root)))
    assert found <= allowed, found - allowed
    for rel in ("models/pretrained.py",):
        if (root / rel).is_file() and "torch.load(" in (root / rel).read_text():
            assert "weights_only=True" in (root / rel).read_text()


def test_checkpoint_metadata_cannot_ask_for_a_huge_model(tmp_path: Path) -> None:
    """A 2 KB checkpoint whose settings describe a 40 GB MLP is refused before allocating."""
    import json

    from safetensors.torch import load_file, save_file

    save_model(tmp_path / "ck", create_model("softmax", in_shape=(1, 8, 8), num_classes=10))
    f = tmp_path / "ck" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(f), "pt") as h:
        md = h.metadata()
    meta = json.loads(md["advlab"])
    meta["model"], meta["settings"] = "mlp", dict(meta["settings"], hidden=[100_000, 100_000])
    save_file(load_file(str(f)), str(f), metadata={**md, "advlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="refusing to build"):
        load_model(tmp_path / "ck")


class _Reduce:
    def __init__(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        self.fn, self.args = fn, args

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (self.fn, self.args)


def _reconstruct_fn():  # type: ignore[no-untyped-def]
    import importlib

    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise AssertionError("no _reconstruct")


@pytest.mark.parametrize("bomb", ["bytes", "ndarray", "reconstruct"])
def test_cifar_unpickler_refuses_huge_allocations(bomb: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A few-byte pickle must not make the allowed globals allocate gigabytes."""
    import pickle

    import numpy as np

    from advlab.data import DatasetError
    from advlab.data.cifar10 import load_cifar10_batch

    payload = {"bytes": _Reduce(bytes, 2**33),
               "ndarray": _Reduce(np.ndarray, (2**20, 2**20)),
               "reconstruct": _Reduce(_reconstruct_fn(), np.ndarray, (2**40,), b"b")}[bomb]
    data = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    assert len(data) < 300
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match="refusing"):
        load_cifar10_batch(path)


def test_cifar_batch_file_size_is_bounded(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import advlab.data.cifar10 as cifar
    from advlab.data import DatasetError

    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02" + b"\x00" * 100)
    monkeypatch.setattr(cifar, "MAX_BATCH_FILE", 50)
    with pytest.raises(DatasetError, match="far larger than a CIFAR-10 batch"):
        cifar.load_cifar10_batch(path)
