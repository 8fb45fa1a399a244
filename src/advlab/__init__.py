"""advlab: adversarial examples and adversarial training with PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
