"""Checkpoints: safetensors weights + JSON metadata, written atomically.

A checkpoint directory holds

* ``model.safetensors``: the weights, with the metadata JSON embedded (so the
  pair can never disagree),
* ``model.json``: the same metadata, human readable (model name and settings,
  dataset, seed, metrics, library version),
* ``train_state.safetensors`` (while/after training): weights, optimizer state
  and RNG state in one file, for ``--resume``.

Nothing is ever unpickled: safetensors stores raw tensors, JSON the rest.
Every file is written to a temporary file in the same directory and moved into
place with :func:`os.replace` (:mod:`advlab.io`), so an interrupted write leaves the old file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from advlab._version import __version__
from advlab.io import atomic_write_bytes, atomic_write_text  # re-exported
from advlab.models.registry import create_model

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "save_model",
    "load_model",
    "read_metadata",
    "save_train_state",
    "load_train_state",
]

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
STATE_FILE = "train_state.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match."""


def _model_meta(model: nn.Module, extra: dict[str, Any] | None) -> dict[str, Any]:
    cfg = getattr(model, "advlab_config", None)
    if cfg is None:
        raise CheckpointError("only models built with advlab.models.create_model can be saved")
    meta: dict[str, Any] = {"model": cfg["name"], "settings": cfg["settings"],
                            "advlab_version": __version__}
    meta.update(extra or {})
    return meta


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(directory: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Save weights and metadata to ``directory`` (atomically). Returns the weights path."""
    directory = Path(directory)
    full = _model_meta(model, meta)
    text = json.dumps(full, indent=2, sort_keys=True, default=str)
    atomic_write_bytes(directory / MODEL_FILE, st_save(_state(model), metadata={"advlab": text}))
    atomic_write_text(directory / META_FILE, text + "\n")
    return directory / MODEL_FILE


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        from safetensors import safe_open  # metadata only

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, Exception) as e:  # noqa: BLE001 - any parse failure is corruption
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None
    return tensors, metadata


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The metadata of the checkpoint in ``directory``."""
    _, md = _read(_weights_path(directory))
    try:
        return dict(json.loads(md["advlab"]))
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{directory} has no advlab metadata") from None


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """``exc``'s message on one line (torch lists state-dict mismatches one per line), shortened."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _weights_path(directory: str | Path) -> Path:
    p = Path(directory)
    return p if p.suffix == ".safetensors" else p / MODEL_FILE


def _build_bounded(path: Path, meta: Any, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Build the model the metadata names, after checking its size on the meta device.

    Metadata that asks for a model larger than the weights the file holds (a 40 GB MLP in
    a 2 KB file) is refused before any memory is allocated.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str) or not isinstance(
            meta.get("settings", {}), dict):
        raise CheckpointError(f"{path} has malformed advlab metadata (model name and settings)")
    settings = meta.get("settings", {})
    try:
        with torch.device("meta"):
            shell = create_model(meta["model"], **settings)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:  # e.g. a negative layer width
        raise CheckpointError(f"{path} names a model advlab cannot build: {_one_line(e)}") from None
    wanted = sum(t.numel() for t in shell.state_dict().values())
    held = sum(t.numel() for t in tensors.values())
    if wanted > held:
        raise CheckpointError(f"{path} does not match model {meta['model']!r}: its metadata describes "
                              f"{wanted:,} values but the file holds {held:,}; refusing to build it")
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten by the file's:
        return create_model(meta["model"], **settings)  # drawing them must not move the caller's RNG


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint directory (or its ``.safetensors`` file), in eval mode."""
    path = _weights_path(directory)
    tensors, md = _read(path)
    try:
        meta = json.loads(md["advlab"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} has no advlab metadata; was it saved by advlab?") from None
    model = _build_bounded(path, meta, tensors)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not match model {meta['model']!r}: {_one_line(e)}") from None
    model.advlab_meta = meta  # type: ignore[assignment]
    return model.to(map_location).eval()


def save_train_state(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
) -> None:
    """Save everything needed to resume training into one atomic file."""
    tensors = {f"model.{k}": v for k, v in _state(model).items()}
    osd = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in osd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = val
    tensors["rng"] = generator.get_state()
    full = dict(meta)
    full["optimizer_param_groups"] = osd["param_groups"]
    full["optimizer_scalars"] = scalars
    text = json.dumps(full, sort_keys=True, default=str)
    atomic_write_bytes(Path(directory) / STATE_FILE, st_save(tensors, metadata={"advlab": text}))


def load_train_state(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore model, optimizer and generator from ``train_state.safetensors``; return its metadata."""
    path = Path(directory) / STATE_FILE
    tensors, md = _read(path)
    try:
        meta = json.loads(md["advlab"])
        if not isinstance(meta, dict):
            raise TypeError(f"metadata is a {type(meta).__name__}, not an object")
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has no usable advlab metadata ({_one_line(e)})") from None
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not match the model: {_one_line(e)}") from None
    try:
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        for idx, sc in meta.pop("optimizer_scalars", {}).items():
            state.setdefault(int(idx), {}).update(sc)
        groups = meta.pop("optimizer_param_groups")
        for g in groups:
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        generator.set_state(tensors["rng"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the optimizer or generator state cannot be restored "
                              f"({type(e).__name__}: {_one_line(e)})") from None
    return dict(meta)
