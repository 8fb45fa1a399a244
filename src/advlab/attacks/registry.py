"""The attack registry: every attack is named once, with its aliases, class and settings.

Every caller that builds an attack from a name (the CLI, the evaluation
cascade, the physical-world experiments, transfer, the lecture) goes through
:func:`create_attack`. A setting the attack does not take is an error that
names the attack's real settings; nothing is silently dropped. The settings of
an attack are the parameters of its constructor (scikit-learn's ``get_params``
rule), so :meth:`Attack.settings` records exactly what ran.

A name may fix some settings (a *variant*): ``apgd-dlr`` is APGD with
``loss="dlr"``, ``apgd-t3`` targeted APGD on the 3 most likely wrong classes,
``square1k`` Square with 1,000 queries. Passing a fixed setting again with
another value is an error.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advlab.attacks.base import Attack

__all__ = ["AttackEntry", "REGISTRY", "register", "get_entry", "create_attack", "attack_names",
           "canonical_names"]


@dataclass(frozen=True)
class AttackEntry:
    """One registered name.

    Attributes:
        name: the canonical name (lower case).
        cls: the attack class.
        fixed: settings this name fixes (a variant of ``cls``).
        aliases: other names for the same entry.
        summary: one line for ``advlab info``.
    """

    name: str
    cls: type[Attack]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    summary: str = ""

    def settings(self) -> list[str]:
        """The settings this name accepts: the constructor's parameters less the fixed ones."""
        params = inspect.signature(self.cls.__init__).parameters
        return [p for p in params if p != "self" and p not in self.fixed]

    def takes(self, setting: str) -> bool:
        return setting in self.settings()

    def check(self, settings: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for a setting this name does not take, naming the real ones."""
        for key, value in settings.items():
            if key in self.fixed:
                if value != self.fixed[key]:
                    base = [e.name for e in REGISTRY.values() if e.cls is self.cls and not e.fixed]
                    hint = f" (use {base[0]!r} to choose it)" if base else ""
                    raise ValueError(f"attack {self.name!r} fixes {key}={self.fixed[key]!r}; "
                                     f"got {key}={value!r}{hint}")
                continue
            if not self.takes(key):
                raise ValueError(f"attack {self.name!r} does not take the setting {key!r}; "
                                 f"its settings are: {', '.join(self.settings()) or 'none'}")

    def create(self, **settings: Any) -> Attack:
        """The attack with ``settings`` (others at their defaults); unknown settings raise."""
        self.check(settings)
        kwargs = {**self.fixed, **settings}
        return self.cls(**kwargs)


#: canonical name or alias -> entry
REGISTRY: dict[str, AttackEntry] = {}


def register(name: str, cls: type[Attack], *, aliases: tuple[str, ...] = (), summary: str = "",
             **fixed: Any) -> AttackEntry:
    """Register ``cls`` under ``name`` (and ``aliases``), optionally fixing some settings."""
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(f"can only register Attack subclasses, got {cls!r}")
    entry = AttackEntry(name.lower(), cls, dict(fixed), tuple(a.lower() for a in aliases), summary)
    entry.check(fixed)  # the fixed settings must be constructor parameters
    for key in (entry.name, *entry.aliases):
        if key in REGISTRY:
            raise ValueError(f"attack name {key!r} is already registered")
    for key in (entry.name, *entry.aliases):
        REGISTRY[key] = entry
    return entry


def get_entry(name: str) -> AttackEntry:
    """The entry for a name or alias (case-insensitive); ``ValueError`` with suggestions otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"attack name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in REGISTRY:
        close = difflib.get_close_matches(key, list(REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown attack {name!r}{hint}; use one of {', '.join(attack_names())}")
    return REGISTRY[key]


def create_attack(name: str, **settings: Any) -> Attack:
    """Build a registered attack by name; a setting it does not take raises ``ValueError``."""
    return get_entry(name).create(**settings)


def attack_names(aliases: bool = True) -> list[str]:
    """Every registered name (with aliases unless ``aliases=False``), sorted."""
    return sorted(REGISTRY) if aliases else canonical_names()


def canonical_names() -> list[str]:
    """The canonical names, one per entry, sorted."""
    return sorted({e.name for e in REGISTRY.values()})


def _register_builtin() -> None:
    """advlab's own attacks (called once, below: the registry is defined with its contents)."""
    from advlab.attacks.apgd import APGD, APGDT
    from advlab.attacks.cw import CarliniWagnerL2
    from advlab.attacks.ddn import DDN
    from advlab.attacks.deepfool import DeepFool
    from advlab.attacks.eot import EOT
    from advlab.attacks.fab import FAB, FABT
    from advlab.attacks.fmn import FMN
    from advlab.attacks.illc import ILLC
    from advlab.attacks.jsma import AddOnlyJSMA
    from advlab.attacks.momentum import MIFGSM
    from advlab.attacks.pgd import BIM, FGSM, PGD
    from advlab.attacks.square import Square
    from advlab.attacks.universal import UniversalAttack

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
    register("ddn", DDN, summary="decoupled direction and norm, L2 minimum norm (unbounded)")
    register("fmn", FMN, summary="fast minimum-norm, l2/linf/l1 (unbounded)")
    register("fab", FAB, summary="fast adaptive boundary, minimum norm (unbounded)")
    register("fab-t", FABT, summary="targeted FAB over the 9 most likely wrong classes (unbounded)")
    register("fab-t3", FABT, n_target_classes=3,
             summary="targeted FAB over the 3 most likely wrong classes (unbounded)")
    # -- physical world and universal perturbations (Kurakin 2016, Athalye 2018, Moosavi-Dezfooli 2017)
    register("illc", ILLC, summary="iterative least-likely class")
    register("eot", EOT, summary="expectation over transformation (print-and-photograph)")
    register("universal", UniversalAttack, summary="a universal perturbation fitted on the batch")
    # -- discrete feature attacks: add-only, L0 budget (Grosse et al. 2017)
    register("jsma-add", AddOnlyJSMA, aliases=("add-only",),
             summary="add-only saliency attack on binary features, L0 budget (spam, malware)")


_register_builtin()
