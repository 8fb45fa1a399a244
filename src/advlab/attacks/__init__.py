"""Adversarial attacks. Every attack: ``attack(model, x, criterion, threat=...)``.

Each attack is registered once in :mod:`advlab.attacks.registry` (name,
aliases, class, settings); build one by name with :func:`create_attack`.
"""

from advlab.attacks.apgd import APGD, APGDT
from advlab.attacks.base import Attack, AttackResult
from advlab.attacks.cw import CW, CarliniWagnerL2
from advlab.attacks.ddn import DDN
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.eot import EOT
from advlab.attacks.fab import FAB, FABT
from advlab.attacks.fmn import FMN
from advlab.attacks.illc import ILLC
from advlab.attacks.jsma import AddOnlyJSMA
from advlab.attacks.momentum import MIFGSM
from advlab.attacks.pgd import BIM, FGM, FGSM, PGD
from advlab.attacks.registry import (
    REGISTRY,
    AttackEntry,
    attack_names,
    canonical_names,
    create_attack,
    get_entry,
    register,
)
from advlab.attacks.square import Square
from advlab.attacks.universal import UniversalAttack

__all__ = ["Attack", "AttackResult", "AddOnlyJSMA",
           "PGD", "BIM", "FGSM", "FGM", "MIFGSM", "ILLC", "EOT", "APGD",
           "APGDT", "CW", "CarliniWagnerL2", "DDN", "DeepFool", "FAB", "FABT", "FMN", "Square",
           "UniversalAttack", "ATTACKS",
           "REGISTRY", "AttackEntry", "register", "get_entry", "create_attack", "attack_names",
           "canonical_names"]

#: canonical name or alias -> attack class (read-only view of the registry, for compatibility)
ATTACKS: dict[str, type[Attack]] = {k: e.cls for k, e in REGISTRY.items()}
