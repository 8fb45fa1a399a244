"""Shared options of eval/attack/train/lecture: ``--device`` and the model's input convention.

``--device`` is checked before anything is loaded: a device that does not exist here
is a one-line usage error naming the devices that do. The model and the data are
moved to it once, here in the CLI; the library never moves tensors on its own.
Under ``torchrun`` each process takes the GPU of its ``LOCAL_RANK``.

``--mean/--std`` (or ``--normalize imagenet``) and ``--bounds LO,HI`` wrap the model
(:func:`advlab.models.normalize.wrap_inputs`) so attacks keep working on [0, 1]
pixels and eps keeps its pixel units.
"""

from __future__ import annotations

import os
from typing import Annotated

import torch
import typer
from torch import nn

from advlab.cli._common import UsageError

__all__ = ["DeviceOpt", "MeanOpt", "StdOpt", "NormalizeOpt", "BoundsOpt", "available_devices",
           "resolve_device", "input_wrapper", "apply_inputs"]

DeviceOpt = Annotated[str | None, typer.Option(
    help="cpu, cuda, cuda:N, mps or auto (the first GPU if any, else cpu). Default cpu; under "
         "torchrun each process uses cuda:LOCAL_RANK when GPUs exist.")]
MeanOpt = Annotated[str | None, typer.Option(
    help="The model expects (x - mean) / std: per-channel mean, e.g. 0.485,0.456,0.406 (attacks "
         "still work on [0, 1] pixels).")]
StdOpt = Annotated[str | None, typer.Option(help="Per-channel std for --mean, e.g. 0.229,0.224,0.225.")]
NormalizeOpt = Annotated[str | None, typer.Option(
    help="imagenet: the torchvision ImageNet --mean/--std.")]
BoundsOpt = Annotated[str | None, typer.Option(
    help="Value range the model takes, e.g. -1,1 or 0,255: [0, 1] pixels are rescaled to it "
         "before the model (and before --mean/--std). Attacks, eps and reports stay in [0, 1] "
         "pixel units.")]


def available_devices() -> list[str]:
    """The devices this machine has, as ``--device`` spells them."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(spec: str | None) -> torch.device:
    """The ``torch.device`` for ``--device`` (``UsageError`` if it does not exist here)."""
    avail = available_devices()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    has_cuda = any(d.startswith("cuda") for d in avail)
    key = (spec or "").strip().lower()
    if not key:
        return torch.device("cuda", local) if world > 1 and has_cuda else torch.device("cpu")
    if key == "auto":
        if has_cuda:
            return torch.device("cuda", local if world > 1 else 0)
        return torch.device("mps" if "mps" in avail else "cpu")
    here = f"devices available here: {', '.join(avail)}"
    if key == "cpu":
        return torch.device("cpu")
    if key == "mps":
        if "mps" not in avail:
            raise UsageError(f"--device mps: Apple's MPS backend is not available ({here})")
        return torch.device("mps")
    kind, _, index = key.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UsageError(f"--device {spec!r} is not a device: use cpu, cuda, cuda:N, mps or auto ({here})")
    if not has_cuda:
        raise UsageError(f"--device {spec}: no CUDA GPU is available ({here})")
    if world > 1:
        if index and int(index) != local:
            raise UsageError(f"--device {spec}: under torchrun each process uses the GPU of its "
                             f"LOCAL_RANK ({local}); pass --device cuda")
        return torch.device("cuda", local)
    i = int(index) if index else 0
    if f"cuda:{i}" not in avail:
        raise UsageError(f"--device {spec}: there is no GPU {i} ({here})")
    return torch.device("cuda", i)


def _floats(spec: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, got {spec!r}") from None
    if not vals:
        raise UsageError(f"{what} must be comma-separated numbers, got {spec!r}")
    return vals


def input_wrapper(mean: str | None, std: str | None, normalize: str | None,
                  bounds: str | None) -> dict[str, object]:
    """Checked ``wrap_inputs`` settings from the options (before anything is loaded)."""
    from advlab.models.normalize import IMAGENET_MEAN, IMAGENET_STD

    out: dict[str, object] = {}
    if normalize is not None:
        if normalize.strip().lower() != "imagenet":
            raise UsageError(f"--normalize {normalize!r}: the only preset is imagenet (or give "
                             "--mean and --std)")
        if mean is not None or std is not None:
            raise UsageError("--normalize imagenet sets --mean and --std: give one or the other")
        out["mean"], out["std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
    elif (mean is None) != (std is None):
        raise UsageError("--mean and --std go together: give both")
    elif mean is not None and std is not None:
        m, s = _floats(mean, "--mean"), _floats(std, "--std")
        if len(m) != len(s) and 1 not in (len(m), len(s)):
            raise UsageError(f"--mean has {len(m)} values and --std {len(s)}: give one per channel")
        if any(v <= 0 for v in s):
            raise UsageError(f"--std must be positive, got {std}")
        out["mean"], out["std"] = m, s
    if bounds is not None:
        b = _floats(bounds, "--bounds")
        if len(b) != 2 or not b[0] < b[1]:
            raise UsageError(f"--bounds must be LO,HI with LO < HI, got {bounds!r}")
        out["bounds"] = (b[0], b[1])
    return out


def apply_inputs(net: nn.Module, wrap: dict[str, object], device: torch.device) -> nn.Module:
    """``net`` wrapped as ``wrap`` says and moved to ``device`` (once)."""
    from advlab.models.normalize import wrap_inputs

    if wrap:
        net = wrap_inputs(net, **wrap)  # type: ignore[arg-type]
    return net.to(device)
