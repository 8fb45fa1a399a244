"""Adversarial attacks. Every attack: ``attack(model, x, criterion, threat=...)``."""

from advlab.attacks.base import Attack, AttackResult
from advlab.attacks.pgd import BIM, FGM, FGSM, PGD

__all__ = ["Attack", "AttackResult", "PGD", "BIM", "FGSM", "FGM", "ATTACKS", "create_attack"]

ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "fgm": FGM, "bim": BIM, "pgd": PGD}

# issue 7: physical world (iterative least-likely class; expectation over transformation)
from advlab.attacks.eot import EOT  # noqa: E402
from advlab.attacks.illc import ILLC  # noqa: E402

ATTACKS.update({"illc": ILLC, "eot": EOT})
__all__ += ["ILLC", "EOT"]

# issue 3: trustworthy evaluation (CW-L2, APGD, targeted APGD, Square, DeepFool)
from advlab.attacks.apgd import APGD, APGDT  # noqa: E402
from advlab.attacks.cw import CW, CarliniWagnerL2  # noqa: E402
from advlab.attacks.deepfool import DeepFool  # noqa: E402
from advlab.attacks.square import Square  # noqa: E402

ATTACKS.update({"cw": CarliniWagnerL2, "apgd": APGD, "apgd-t": APGDT, "square": Square,
                "deepfool": DeepFool})
__all__ += ["APGD", "APGDT", "CW", "CarliniWagnerL2", "DeepFool", "Square"]

# issue 6: transfer (momentum iterative FGSM)
from advlab.attacks.momentum import MIFGSM  # noqa: E402

ATTACKS["mifgsm"] = MIFGSM
__all__ += ["MIFGSM"]


def create_attack(name: str, **settings: object) -> Attack:
    """Build a registered attack by name (``fgsm``, ``bim``, ``pgd``, ...)."""
    key = name.lower()
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; use one of {sorted(ATTACKS)}")
    return ATTACKS[key](**settings)  # type: ignore[arg-type]
