"""Adversarial attacks. Every attack: ``attack(model, x, criterion, threat=...)``.

Each attack is registered once in :mod:`advlab.attacks.registry` (name,
aliases, class, settings); build one by name with :func:`create_attack`.
"""

from advlab.attacks.apgd import APGD, APGDT
from advlab.attacks.base import Attack, AttackResult
from advlab.attacks.cw import CW, CarliniWagnerL2
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.eot import EOT
from advlab.attacks.illc import ILLC
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

__all__ = ["Attack", "AttackResult", "PGD", "BIM", "FGSM", "FGM", "MIFGSM", "ILLC", "EOT", "APGD",
           "APGDT", "CW", "CarliniWagnerL2", "DeepFool", "Square", "UniversalAttack", "ATTACKS",
           "REGISTRY", "AttackEntry", "register", "get_entry", "create_attack", "attack_names",
           "canonical_names"]

# -- gradient attacks on the one engine (Goodfellow 2014, Kurakin 2016, Madry 2017, Dong 2018)
register("fgsm", FGSM, aliases=("fgm",), summary="one full step along the norm's steepest ascent")
register("bim", BIM, summary="iterative FGSM without random start")
register("pgd", PGD, summary="projected gradient descent with random start and restarts")
register("mifgsm", MIFGSM, aliases=("mi-fgsm",), summary="momentum iterative FGSM (transfer)")
# -- parameter-free evaluation attacks (Croce & Hein 2020); apgd = apgd-ce
register("apgd", APGD, aliases=("apgd-ce",), summary="Auto-PGD with the cross-entropy loss")
register("apgd-dlr", APGD, loss="dlr", summary="Auto-PGD with the DLR loss")
register("apgd-t", APGDT, summary="targeted Auto-PGD (DLR) over the 9 most likely wrong classes")
register("apgd-t3", APGDT, n_target_classes=3, summary="targeted Auto-PGD over the top 3 classes")
# -- score-based black box (Andriushchenko et al. 2020)
register("square", Square, summary="Square attack, 5,000 queries")
register("square1k", Square, queries=1000, summary="Square attack, 1,000 queries")
register("square2k", Square, queries=2000, summary="Square attack, 2,000 queries")
# -- minimum-norm attacks (Carlini & Wagner 2017; Moosavi-Dezfooli et al. 2016)
register("cw", CarliniWagnerL2, aliases=("cw-l2",), summary="Carlini-Wagner L2 (unbounded)")
register("deepfool", DeepFool, summary="DeepFool (unbounded)")
# -- physical world and universal perturbations (Kurakin 2016, Athalye 2018, Moosavi-Dezfooli 2017)
register("illc", ILLC, summary="iterative least-likely class")
register("eot", EOT, summary="expectation over transformation (print-and-photograph)")
register("universal", UniversalAttack, summary="a universal perturbation fitted on the batch")

#: canonical name or alias -> attack class (read-only view of the registry, for compatibility)
ATTACKS: dict[str, type[Attack]] = {k: e.cls for k, e in REGISTRY.items()}
