"""Your model, loaded by path or by name (everything except advlab's own checkpoint folders).

:func:`load_external_model` accepts

* ``arch.py:build``: a Python file and a function in it that returns an ``nn.Module``;
* ``arch.py:build@weights.safetensors``: the same architecture with a safetensors state dict
  loaded into it (strictly: a missing or unexpected key or a shape mismatch is an error);
  ``weights.safetensors@arch.py:build`` is accepted too;
* ``model.pt`` (any name): a TorchScript file written by ``torch.jit.save``;
* a name from :data:`PRETRAINED` (``efficientnet-lite0``, :mod:`advlab.models.pretrained`).

A Python file and a TorchScript file are code: load only models you trust, as with any
``import``. A pickle (``torch.save`` of a model or a state dict) is refused, never
unpickled, since unpickling runs whatever the file says; the message says how to re-export.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from advlab.models.pretrained import PRETRAINED, load_pretrained

__all__ = ["ModelLoadError", "inspect_model_file", "load_external_model", "load_factory",
           "load_safetensors_weights", "load_torchscript"]

_FORMS = ("file.py:function, file.py:function@weights.safetensors, a TorchScript file, "
          f"an advlab checkpoint folder or one of: {', '.join(PRETRAINED)}")
_REEXPORT = ("export it with torch.jit.save(torch.jit.script(model), 'model.pt'), or save the state "
             "dict with safetensors.torch.save_file and load it as arch.py:build@weights.safetensors")


class ModelLoadError(ValueError):
    """A model could not be loaded; the one-line message says what to give instead."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_factory(file: str | Path, function: str) -> nn.Module:
    """Import ``file`` (a Python file) and return ``function()``, a model in eval mode.

    Raises:
        ModelLoadError: The file is missing or fails to import, has no such function, the
            function raises, or returns something that is not an ``nn.Module``.
    """
    path = Path(file).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"model file {file} not found")
    mod_spec = importlib.util.spec_from_file_location(f"advlab_user_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ModelLoadError(f"cannot import {file}: not a Python file")
    module = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's file is reported in one line
        raise ModelLoadError(f"importing {file} failed: {_first_line(e)}") from e
    finally:
        sys.path.remove(str(path.parent))
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ModelLoadError(f"{file} has no function {function!r}")
    try:
        model = factory()
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{file}:{function}() raised {_first_line(e)}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{file}:{function}() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def inspect_model_file(path: str | Path) -> str:
    """What a model file holds, from its bytes: ``"torchscript"``, ``"pickle"`` (``torch.save``),
    ``"safetensors"``, ``"onnx"`` or ``"unknown"``. Nothing is loaded or executed."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "unknown"
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        return "unknown"
    # safetensors first: its 8-byte header length may start with 0x80 (a 128-byte header)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2+: torch.save's legacy format
        return "pickle"
    if head[:2] == b"\x08\x07" or path.suffix.lower() == ".onnx":
        return "onnx"
    return "unknown"


def load_torchscript(path: str | Path) -> nn.Module:
    """A TorchScript model (``torch.jit.save``), on the CPU, in eval mode.

    Raises:
        ModelLoadError: The file is missing, is a pickle (refused, never unpickled), a bare
            safetensors file, ONNX, or not a readable TorchScript archive.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found (give {_FORMS})")
    kind = inspect_model_file(path)
    if kind == "pickle":
        raise ModelLoadError(f"{path} is a pickle (torch.save), which advlab never loads because "
                             f"unpickling can run arbitrary code; {_REEXPORT}")
    if kind == "safetensors":
        raise ModelLoadError(f"{path} holds only weights; give the architecture too: "
                             f"arch.py:build@{path}")
    if kind == "onnx":
        raise ModelLoadError(f"{path} looks like ONNX, which advlab cannot differentiate through; "
                             f"{_REEXPORT}")
    if kind != "torchscript":
        raise ModelLoadError(f"{path} is not a TorchScript file (nor any model format advlab reads); "
                             f"{_REEXPORT}")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError and friends for corrupt archives
        raise ModelLoadError(f"cannot load TorchScript file {path}: {_first_line(e)}") from e
    return model.eval()


def _describe(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
    return f"{len(keys)} {what} ({shown})"


def load_safetensors_weights(model: nn.Module, path: str | Path, arch: str = "the architecture") -> nn.Module:
    """Load a safetensors state dict into ``model`` strictly; return ``model`` in eval mode.

    Raises:
        ModelLoadError: The file is missing or not safetensors, or its keys or shapes do not
            match ``model.state_dict()`` (the message lists them).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} not found")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path} as safetensors: {_first_line(e)}") from None
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing:
        problems.append(_describe(missing, "missing keys"))
    if unexpected:
        problems.append(_describe(unexpected, "unexpected keys"))
    if shapes:
        problems.append(_describe(shapes, "shape mismatches, file vs model"))
    if problems:
        raise ModelLoadError(f"{path} does not fit {arch}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _split_weights(spec: str) -> tuple[str, str]:
    """``arch.py:build@w.safetensors`` (either order) -> ``("arch.py:build", "w.safetensors")``."""
    left, _, right = spec.rpartition("@")
    for arch, weights in ((left, right), (right, left)):
        if _factory_parts(arch) is not None and weights.lower().endswith(".safetensors"):
            return arch, weights
    raise ModelLoadError(f"cannot read model {spec!r}: weights go as arch.py:build@weights.safetensors")


def _factory_parts(spec: str) -> tuple[str, str] | None:
    file, sep, function = spec.rpartition(":")
    if sep and file.endswith(".py") and function.isidentifier():
        return file, function
    return None


def load_external_model(spec: str) -> nn.Module:
    """Load the model ``spec`` names (the forms are in the module docstring), in eval mode.

    Raises:
        ModelLoadError: Missing files, an unknown name, a refused pickle, weights that do
            not fit, a factory that fails; one line that says what to give instead.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"give a model: {_FORMS}")
    spec = spec.strip()
    if spec.lower() in PRETRAINED and not Path(spec).exists():
        return load_pretrained(spec.lower())
    if "@" in spec and not Path(spec).exists():
        arch, weights = _split_weights(spec)
        file, function = _factory_parts(arch)  # type: ignore[misc]
        return load_safetensors_weights(load_factory(file, function), weights, arch)
    parts = _factory_parts(spec)
    if parts is not None:
        return load_factory(*parts)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {spec} not found; give {_FORMS}")
    if path.is_dir():
        raise ModelLoadError(f"{spec} is a folder but not an advlab checkpoint (no model.json); "
                             f"give {_FORMS}")
    return load_torchscript(path)
