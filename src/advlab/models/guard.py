"""A thin guard around a model someone else wrote, so its failures read as theirs.

When ``advlab eval my_model.py:build`` fails inside ``build()``'s network, the user should
read *"your model raised RuntimeError: mat1 and mat2 shapes cannot be multiplied ..."*
together with the shape and dtype advlab fed it -- not an advlab traceback. The guard also
checks what the model returns (a floating-point ``(N, classes)`` tensor) and what it is made
of (``float64`` parameters next to advlab's ``float32`` data), before any work is done.

Nothing here moves, copies or changes the wrapped model; ``GuardedModel.inner`` is the
user's module itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ModelError", "GuardedModel", "guard_model", "check_parameter_dtypes"]


class ModelError(RuntimeError):
    """The user's model raised, or returned something that is not a batch of logits.

    The message is one line: what the model did, plus the model's own message.
    """


def check_parameter_dtypes(model: nn.Module, what: str = "your model") -> None:
    """Refuse a model whose floating-point parameters are not ``float32``.

    advlab's datasets are ``float32`` in ``[0, 1]``; a ``float64`` (or ``float16``) network
    would fail on the first batch with a torch dtype error deep inside an attack.

    Raises:
        ModelError: naming the dtype found and the one-line fix.
    """
    dtypes = {t.dtype for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()}
    other = sorted(str(d).replace("torch.", "") for d in dtypes if d != torch.float32)
    if other:
        raise ModelError(f"{what} has {', '.join(other)} parameters, but advlab feeds float32 "
                         "images in [0, 1]; convert it with model.float() before returning it")


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    return type(x).__name__


class GuardedModel(nn.Module):
    """Call ``inner`` and turn its failures into one-line :class:`ModelError`\\ s.

    Attribute look-ups that the wrapper does not answer go to ``inner`` (so
    ``guarded.advlab_meta`` still works). The forward pass is exactly ``inner(x)``: no
    copy, no change of dtype or device.
    """

    def __init__(self, inner: nn.Module, name: str = "your model") -> None:
        super().__init__()
        self.inner = inner
        self._guard_name = name
        self.train(inner.training)

    def __getattr__(self, key: str) -> Any:
        try:
            return super().__getattr__(key)
        except AttributeError:
            inner = super().__getattr__("inner")
            return getattr(inner, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = self._guard_name
        try:
            out = self.inner(x)
        except ModelError:
            raise
        except Exception as e:  # the user's code: any exception is theirs
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ModelError(f"{name} raised {type(e).__name__} on input {_describe(x)}"
                             + (f": {msg}" if msg else "")) from e
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"{name} returned {type(out).__name__}, not a tensor of logits")
        if not out.dtype.is_floating_point:
            raise ModelError(f"{name} returned {_describe(out)} outputs; advlab needs "
                             "floating-point logits, one score per class")
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ModelError(f"{name} returned shape {tuple(out.shape)} for a batch of "
                             f"{x.shape[0]}; advlab needs logits of shape (N, classes)")
        return out

    def extra_repr(self) -> str:
        return f"guarding {self._guard_name}"


def guard_model(model: nn.Module, name: str = "your model") -> GuardedModel:
    """Wrap ``model`` in a :class:`GuardedModel` after checking its parameter dtypes."""
    if isinstance(model, GuardedModel):
        return model
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name} is a {type(model).__name__}, not a torch.nn.Module")
    check_parameter_dtypes(model, name)
    return GuardedModel(model, name)
