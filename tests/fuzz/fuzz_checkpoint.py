"""Fuzz the checkpoint reader (:func:`advlab.checkpoint.load_model`, which parses the metadata
and builds the model it names) with any bytes.

The first byte picks what the rest is: even, the whole ``model.safetensors`` file; odd, the
``advlab`` metadata string of an otherwise valid checkpoint of a small MLP (so the fuzzer
reaches the metadata check: model names, settings, absurd sizes). A read either returns an
``nn.Module`` in eval mode or raises a one-line :class:`~advlab.checkpoint.CheckpointError`;
metadata never makes it allocate a model larger than the weights the file holds.

Run: ``python tests/fuzz/fuzz_checkpoint.py -runs=3000 -timeout=10``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run, scratch_dir  # noqa: E402

with instrumented(__name__ == "__main__"):
    import torch
    from safetensors.torch import save as st_save

    from advlab.checkpoint import CheckpointError, load_model
    from advlab.models import create_model

_DIR = scratch_dir()
_SETTINGS = {"hidden": [4], "in_shape": [1, 2, 2], "num_classes": 3}
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(0)
    _TENSORS = {k: v.contiguous() for k, v in create_model("mlp", **_SETTINGS).state_dict().items()}


def _file(meta: str) -> bytes:
    return st_save(_TENSORS, metadata={"advlab": meta})


def seeds() -> list[bytes]:
    """A valid checkpoint (whole file, and its metadata alone), and nearby metadata."""
    meta = json.dumps({"model": "mlp", "settings": _SETTINGS, "version": "0.1.0"})
    return [b"\x00" + _file(meta), b"\x01" + meta.encode(),
            b"\x01" + json.dumps({"model": "mlp", "settings": {**_SETTINGS, "hidden": [4, 4]}}).encode(),
            b"\x01" + json.dumps({"model": "cnn", "settings": {}}).encode()]


def one_input(data: bytes) -> None:
    """Write the checkpoint ``data`` describes, load it, check the model or the error."""
    if not data:
        return
    path = _DIR / "model.safetensors"
    if data[0] & 1:
        path.write_bytes(_file(data[1:].decode("utf-8", errors="replace")))
    else:
        path.write_bytes(data[1:])
    model = expect_clean(lambda: load_model(path), (CheckpointError,))
    if model is None:
        return
    if not isinstance(model, torch.nn.Module) or model.training:
        training = getattr(model, "training", None)
        raise Finding(f"load_model returned {type(model).__name__} (training={training})")


if __name__ == "__main__":
    run(one_input, seeds())
