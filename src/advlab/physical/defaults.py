"""The attack set of the destruction-rate experiment, shared by the CLI, the lecture and bench."""

from __future__ import annotations

from advlab.attacks.base import Attack
from advlab.attacks.eot import EOT
from advlab.attacks.illc import ILLC
from advlab.attacks.pgd import BIM, FGSM
from advlab.transforms import Transform, print_and_photograph

__all__ = ["PHYSICAL_ATTACKS", "physical_attacks"]

#: attack names accepted by :func:`physical_attacks`
PHYSICAL_ATTACKS = ("fgsm", "bim", "illc", "eot")


def physical_attacks(names: list[str] | tuple[str, ...] = PHYSICAL_ATTACKS, *, steps: int = 10,
                     eot_samples: int = 8, eot_transform: Transform | None = None,
                     eot_loss: str = "ce", eot_steps: int | None = None) -> dict[str, Attack]:
    """FGSM, BIM, ILLC (Kurakin et al. 2016) and EOT (Athalye et al. 2018) by name.

    Args:
        names: subset of :data:`PHYSICAL_ATTACKS`, in table order.
        steps: iterations of BIM, ILLC and EOT (step ``2.5 eps / steps``).
        eot_samples: transformations per EOT gradient.
        eot_transform: the distribution EOT optimises over (default: the
            print-and-photograph preset).
        eot_loss: EOT objective (``"ce" | "cw" | "dlr"``).
        eot_steps: iterations of EOT (default ``steps``); its step is
            ``2.5 eps / eot_steps``.

    Returns:
        name -> attack.
    """
    out: dict[str, Attack] = {}
    for n in names:
        key = n.strip().lower()
        if key == "fgsm":
            out[key] = FGSM()
        elif key == "bim":
            out[key] = BIM(steps=steps)
        elif key == "illc":
            out[key] = ILLC(steps=steps)
        elif key == "eot":
            out[key] = EOT(transform=eot_transform or print_and_photograph(), samples=eot_samples,
                           steps=steps if eot_steps is None else eot_steps, loss=eot_loss)
        else:
            raise ValueError(f"unknown attack {n!r}; use some of {list(PHYSICAL_ATTACKS)}")
    return out
