"""The label-only black-box attack of Papernot et al. (2017): train a substitute, attack it.

The attacker sees only the labels an oracle (a model behind an API) assigns to the
inputs it submits. Starting from a small seed set it trains a local substitute on
those labels, grows the set with Jacobian-based dataset augmentation (points that
move along the sign of the substitute's gradient for the oracle's label, so they
probe the oracle's decision boundaries), retrains, and finally crafts FGSM examples
on the substitute, which transfer to the oracle.

The oracle is anything with ``predict(x) -> labels``: an in-process model
(:class:`~advlab.models.sklearn.TorchClassifier`, a scikit-learn wrapper) or the HTTP
client :class:`advlab.serve.client.HTTPOracle`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import Attack, AttackResult, store_settings
from advlab.attacks.pgd import FGSM
from advlab.criteria import Misclassification
from advlab.models.ensemble import EnsembleModel
from advlab.models.sklearn import Classifier, as_classifier
from advlab.threat import ThreatModel
from advlab.transforms import Affine
from advlab.validation import check_inputs

__all__ = ["SubstituteAttack", "substitute_augmentation"]

log = logging.getLogger(__name__)


def substitute_augmentation() -> Callable[..., torch.Tensor]:
    """The ``augment`` preset of ``advlab blackbox --augment affine``: small affine jitter.

    Rotation within +-10 degrees, scale 0.9-1.1, shift within +-7% of the side (2 pixels
    on MNIST), zero padding: changes a handwritten digit's pixels, not its class.
    """
    return Affine(rotation=(-10.0, 10.0), scale=(0.9, 1.1), translate=(-0.07, 0.07), padding="zeros")


class SubstituteAttack:
    """Black-box attack via a substitute trained on oracle labels (Papernot et al. 2017).

    Args:
        substitute_epochs: the paper's ``rho``: rounds of (label, train, augment); the
            last round trains without augmenting.
        augmentation_step: the paper's ``lambda`` (0.1): size of the Jacobian step.
        sign_period: the paper's ``tau``: the step's sign flips every ``tau`` rounds,
            ``lambda_rho = lambda * (-1)^floor(rho / tau)``, so new points go back
            and forth across the boundaries instead of drifting away from the data.
        train_epochs: passes over the current set per round (warm-started).
        lr: Adam learning rate.
        batch_size: training batch size.
        max_queries: stop asking for labels beyond this many (augmented points past the
            budget are subsampled at random, like the paper's reservoir sampling).
        bounds: valid input range.
        ensemble: number of substitutes to craft on (``>= 1``). Beyond the one trained
            during the augmentation rounds, ``ensemble - 1`` more copies of the
            substitute architecture are re-initialised and trained by *replaying* the
            rounds on the labelled set that was gathered (round ``r`` trains on the
            first ``train_size_r`` points, warm-started, like the fitted one). They
            cost no oracle queries; :meth:`craft` attacks the mean of their logits
            (the ensemble objective of Liu et al. 2017 on the attacker's side).
        augment: optional label-preserving transform applied to every training batch,
            ``augment(x, generator=g) -> x`` (e.g. ``advlab.physical.Affine`` with a few
            degrees of rotation and a pixel or two of shift). It costs no queries: the
            oracle's label of a labelled point is reused for its transformed copies, a
            prior (small shifts do not change a digit) rather than information from the
            oracle. ``None`` (default) trains on the labelled points as they are, as in
            the paper.

    Attributes (after :meth:`fit`):
        substitute_: the trained substitute (a deep copy of the module passed to ``fit``).
        substitutes_: all substitutes (``substitute_`` first; ``ensemble`` of them).
        attack_model_: what :meth:`craft` attacks: ``substitute_``, or the logit mean of
            ``substitutes_`` when ``ensemble > 1``.
        queries_: oracle labels requested.
        train_x_, train_y_: the final training set and its oracle labels.
        history_: one dict per round (round, queries, train_size, agreement with the oracle
            on the training set) plus whatever ``callback`` returned.

    References:
        Papernot, McDaniel, Goodfellow, Jha, Celik & Swami, "Practical Black-Box Attacks
        against Machine Learning", AsiaCCS 2017 (arXiv:1602.02697), Algorithm 1.
        Liu, Chen, Liu & Song, "Delving into Transferable Adversarial Examples and
        Black-box Attacks", ICLR 2017 (arXiv:1611.02770) (the substitute ensemble).
    """

    def __init__(self, substitute_epochs: int = 6, augmentation_step: float = 0.1,
                 sign_period: int = 3, train_epochs: int = 10, lr: float = 1e-3,
                 batch_size: int = 64, max_queries: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0), ensemble: int = 1,
                 augment: Callable[..., torch.Tensor] | None = None) -> None:
        store_settings(self, locals())

    def settings(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        aug = out.get("augment")
        if aug is not None:
            out["augment"] = aug.settings() if callable(getattr(aug, "settings", None)) else repr(aug)
        return {"attack": "SubstituteAttack", **out}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"SubstituteAttack({args})"

    def _check(self) -> None:
        for name in ("substitute_epochs", "sign_period", "train_epochs", "batch_size", "ensemble"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError(f"max_queries must be >= 1 or None, got {self.max_queries}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.augment is not None and not callable(self.augment):
            raise TypeError("augment must be callable (x, generator=...) -> x, "
                            f"got {type(self.augment).__name__}")

    def _query(self, oracle: Classifier, x: torch.Tensor) -> torch.Tensor:
        y = oracle.predict(x)
        if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
            raise ValueError(f"the oracle must return one label per input, got {getattr(y, 'shape', y)}")
        self.queries_ += int(x.shape[0])
        return y.long().to(x.device)

    def _train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               opt: torch.optim.Optimizer, generator: torch.Generator | None) -> None:
        model.train()
        n = x.shape[0]
        aug_gen = generator if generator is not None else getattr(self, "aug_generator_", None)
        for _ in range(self.train_epochs):
            order = (torch.randperm(n, generator=generator, device=generator.device) if generator is not None
                     else torch.arange(n))
            for s in range(0, n, self.batch_size):
                b = order[s:s + self.batch_size].to(x.device)
                xb = x[b]
                if self.augment is not None:
                    # without a generator, a fixed-seed one: the caller's global RNG stays untouched
                    xb = self.augment(xb, generator=aug_gen)
                    if xb.shape != x[b].shape:
                        raise ValueError("augment changed the batch shape "
                                         f"{tuple(x[b].shape)} -> {tuple(xb.shape)}")
                loss = F.cross_entropy(model(xb), y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        model.eval()

    def _replay(self, substitute: nn.Module, seed: int, generator: torch.Generator | None) -> nn.Module:
        """A fresh copy of ``substitute`` trained through the recorded rounds (no queries)."""
        model = copy.deepcopy(substitute)
        with torch.random.fork_rng(devices=[]):  # re-initialise without touching the caller's RNG
            torch.manual_seed(seed)
            for m in model.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        for p in model.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        for entry in self.history_:
            size = entry["train_size"]
            self._train(model, self.train_x_[:size], self.train_y_[:size], opt, generator)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()

    def _jacobian_sign(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sign(d F_y(x) / dx)`` for the oracle label ``y``, in batches."""
        out = []
        for s in range(0, x.shape[0], 512):
            xb = x[s:s + 512].detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xb)
                (g,) = torch.autograd.grad(logits.gather(1, y[s:s + 512, None]).sum(), xb)
            out.append(g.sign())
        return torch.cat(out)

    def fit(self, oracle: Classifier | nn.Module, x_seed: torch.Tensor, substitute: nn.Module,
            generator: torch.Generator | None = None,
            callback: Callable[[int, SubstituteAttack], dict[str, Any] | None] | None = None,
            ) -> SubstituteAttack:
        """Train the substitute on oracle labels only.

        Args:
            oracle: the attacked model (``predict(x) -> labels``); a torch module is
                wrapped in :class:`~advlab.models.sklearn.TorchClassifier`.
            x_seed: the attacker's initial inputs (e.g. 150 test images), unlabelled.
            substitute: an untrained module (copied; the argument is not modified).
            generator: shuffles training batches and subsamples past the budget.
            callback: called after each round with ``(round, self)``; a dict it returns
                is merged into that round's ``history_`` entry (e.g. the oracle's
                misclassification rate on the current substitute's examples).

        Returns:
            ``self``.
        """
        self._check()
        if not isinstance(substitute, nn.Module):
            raise TypeError(f"substitute must be a torch.nn.Module, got {type(substitute).__name__}")
        check_inputs(substitute, x_seed, self.bounds)
        if x_seed.shape[0] == 0:
            raise ValueError("the seed set is empty; give a few inputs per class (the paper uses 150)")
        orc = as_classifier(oracle)
        self.aug_generator_ = torch.Generator(device=x_seed.device).manual_seed(0)
        self.queries_ = 0
        self.history_: list[dict[str, Any]] = []
        model = copy.deepcopy(substitute)
        for p in model.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        lo, hi = self.bounds
        budget = self.max_queries if self.max_queries is not None else math.inf
        x_train = x_seed.detach().clone()
        take = int(min(x_train.shape[0], budget))
        if take < x_train.shape[0]:
            x_train = x_train[:take]
        y_train = self._query(orc, x_train)
        self.substitute_ = model
        self.substitutes_ = [model]
        self.attack_model_: nn.Module = model  # callbacks during the rounds craft on it
        for rho in range(self.substitute_epochs):
            self._train(model, x_train, y_train, opt, generator)
            with torch.no_grad():
                agree = float((model(x_train).argmax(1) == y_train).float().mean())
            entry: dict[str, Any] = {"round": rho, "queries": self.queries_,
                                     "train_size": int(x_train.shape[0]), "train_agreement": agree}
            self.train_x_, self.train_y_ = x_train, y_train
            if callback is not None:
                entry.update(callback(rho, self) or {})
            self.history_.append(entry)
            log.info("substitute round %d: %s", rho, entry)
            if rho == self.substitute_epochs - 1:
                break
            left = budget - self.queries_
            if left <= 0:
                log.info("query budget exhausted after %d queries", self.queries_)
                continue
            lam = self.augmentation_step * (-1) ** (rho // self.sign_period)
            new = torch.clamp(x_train + lam * self._jacobian_sign(model, x_train, y_train), lo, hi)
            if new.shape[0] > left:
                keep = torch.randperm(new.shape[0], generator=generator,
                                      device=generator.device if generator is not None else None)[: int(left)]
                new = new[keep.sort().values.to(new.device)]
            y_new = self._query(orc, new)
            x_train = torch.cat([x_train, new])
            y_train = torch.cat([y_train, y_new])
        self.train_x_, self.train_y_ = x_train, y_train
        for p in model.parameters():
            p.requires_grad_(False)
        for k in range(1, self.ensemble):
            seed = (int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
                    if generator is not None
                    else k)
            self.substitutes_.append(self._replay(substitute, seed, generator))
        if self.ensemble > 1:
            self.attack_model_ = EnsembleModel(self.substitutes_, combine="logits").eval()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "substitute_"):
            raise ValueError("SubstituteAttack is not fitted yet; call .fit(oracle, x_seed, substitute)")

    def craft(self, x: torch.Tensor, threat: ThreatModel, labels: torch.Tensor | None = None,
              attack: Attack | None = None, generator: torch.Generator | None = None) -> AttackResult:
        """Adversarial examples on the substitute (FGSM by default, as in the paper).

        With ``ensemble > 1`` the attacked model is the logit mean of the substitutes.
        Any attack works, e.g. FGSM on a Gaussian-smoothed substitute:
        ``EOT(GaussianNoise(0.3, straight_through_clip=True), samples=32, steps=1, step_size=eps)`` from
        :mod:`advlab.physical` (one sign step along the gradient averaged over noisy
        copies).

        Args:
            labels: the classes to move away from; default the substitute's own
                predictions (the attacker needs no labels).
        """
        self._check_fitted()
        sub = self.attack_model_
        if labels is None:
            with torch.no_grad():
                labels = torch.cat([sub(x[s:s + 1000]).argmax(1) for s in range(0, x.shape[0], 1000)])
        atk = attack or FGSM()
        # attacks that expand each input into several copies (EOT's ``samples``) get smaller
        # batches, so memory stays near that of 1000 plain inputs
        copies = getattr(atk, "samples", 1)
        batch = max(1, 1000 // copies) if isinstance(copies, int) and copies > 1 else 1000
        return atk(sub, x, Misclassification(labels), threat=threat, generator=generator, batch_size=batch)

    def evaluate(self, oracle: Classifier | nn.Module, x: torch.Tensor, y: torch.Tensor,
                 threat: ThreatModel, attack: Attack | None = None,
                 with_true_labels: bool = False,
                 generator: torch.Generator | None = None) -> dict[str, Any]:
        """Attack the oracle with the substitute's examples on ``(x, y)``.

        ``generator`` feeds the crafting attack's random draws (a private seeded one when
        ``None``, see :class:`~advlab.attacks.base.Attack`).

        The examples are crafted with the substitute's own predictions as labels (the attacker
        needs no labels, as in the paper's FGSM); ``with_true_labels`` also crafts them with
        ``y`` (an attacker who knows its images' classes) and reports that rate too.

        Returns:
            ``oracle_misclassification``: share of the adversarial examples the oracle
            misclassifies (the paper's success rate); ``transfer_rate``: the same among the
            examples the oracle classifies correctly when clean; ``oracle_clean_acc``;
            ``eval_queries`` (oracle labels spent on this evaluation); optionally
            ``oracle_misclassification_true_labels``.
        """
        orc = as_classifier(oracle)
        clean = orc.predict(x)
        adv = orc.predict(self.craft(x, threat, attack=attack, generator=generator).x_adv)
        ok = clean == y
        wrong = adv != y
        out: dict[str, Any] = {"oracle_misclassification": float(wrong.float().mean()),
               "transfer_rate": float(wrong[ok].float().mean()) if bool(ok.any()) else math.nan,
               "oracle_clean_acc": float(ok.float().mean()), "eval_queries": 2 * int(x.shape[0]),
               "n_examples": int(x.shape[0]), "threat": threat.to_dict()}
        if with_true_labels:
            adv_t = orc.predict(self.craft(x, threat, labels=y, attack=attack, generator=generator).x_adv)
            out["oracle_misclassification_true_labels"] = float((adv_t != y).float().mean())
            out["eval_queries"] += int(x.shape[0])
        return out
