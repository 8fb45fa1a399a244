"""Evading spam (and malware) detectors with features they cannot take away.

A detector on binary features (a word occurs in the email; a permission or API call occurs
in the program) is attacked by *adding* features only, so the email still reads and the
program still runs. :class:`~advlab.attacks.jsma.AddOnlyJSMA` is the white-box attack
(Grosse et al. 2017); the "good word" attack of Lowd & Meek (2005) is the black-box baseline:
append the words most typical of legitimate mail. Offline we have two spam corpora and no
malware features (DREBIN cannot be had offline): UCI spambase as shipped by R's ``kernlab``
(Debian ``r-cran-kernlab``; read with the ``rdata`` package) and 250 SpamAssassin emails from
Debian's ``python3-pattern`` test corpora. They stand in for DREBIN's binary features.

References:
    Grosse, Papernot, Manoharan, Backes & McDaniel, "Adversarial Examples for Malware
    Detection", ESORICS 2017. Lowd & Meek, "Good Word Attacks on Statistical Spam Filters",
    CEAS 2005. Dalvi, Domingos, Mausam, Sanghai & Verma, "Adversarial Classification", KDD
    2004. Biggio et al., "Evasion Attacks against Machine Learning at Test Time", ECML PKDD 2013.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.attacks.jsma import AddOnlyJSMA
from advlab.threat import ThreatModel

__all__ = ["FeatureSet", "SpamDataUnavailable", "SPAMBASE_RDA", "SPAMASSASSIN_CSV", "load_spambase",
           "load_spamassassin", "good_words", "good_word_attack", "train_detector", "EvasionResult",
           "spam_evasion"]

#: where Debian's r-cran-kernlab puts UCI spambase
SPAMBASE_RDA = Path("/usr/lib/R/site-library/kernlab/data/spam.rda")
#: where Debian's python3-pattern puts 125 spam and 125 ham SpamAssassin emails
SPAMASSASSIN_CSV = Path("/usr/share/doc/python3-pattern/test/corpora/spam-apache.csv")


class SpamDataUnavailable(RuntimeError):
    """A spam corpus (or the package that reads it) is missing; the message says how to get it."""


@dataclass
class FeatureSet:
    """Binary features of emails.

    Attributes:
        name: corpus name.
        x: ``(N, D)`` float tensor of 0/1 features.
        y: ``(N,)`` labels, 1 = spam, 0 = ham.
        features: the ``D`` feature names (words).
        source: the file read.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    features: list[str]
    source: str

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] != self.y.shape[0] or self.x.shape[1] != len(self.features):
            raise ValueError(f"{self.name}: x {tuple(self.x.shape)}, y {tuple(self.y.shape)} and "
                             f"{len(self.features)} feature names do not match")
        if self.x.numel() and not bool(((self.x == 0) | (self.x == 1)).all()):
            raise ValueError(f"{self.name}: features must be 0 or 1")
        if len(self.y) and set(self.y.unique().tolist()) - {0, 1}:
            raise ValueError(f"{self.name}: labels must be 0 (ham) or 1 (spam)")


def load_spambase(path: str | Path | None = None) -> FeatureSet:
    """UCI spambase (4,601 emails) from ``kernlab``'s ``spam.rda``, as binary word presence.

    The 48 word and 6 character frequencies become 0/1 (the word occurs); the three
    capital-run-length statistics are dropped (they are not add-only features).

    Raises:
        SpamDataUnavailable: the file or the ``rdata`` package is missing.
    """
    p = Path(path) if path is not None else SPAMBASE_RDA
    if not p.is_file():
        raise SpamDataUnavailable(f"spambase not found at {p}: apt-get install r-cran-kernlab")
    try:
        import rdata
    except ImportError:
        raise SpamDataUnavailable("reading spambase needs the rdata package: "
                                  "pip install 'advlab[spam]'") from None
    try:
        df = rdata.read_rda(str(p))["spam"]
        cols = [str(c) for c in df.columns][:54]
        x = torch.as_tensor((df[cols].to_numpy(dtype=np.float64) > 0).astype(np.float32))
        y = torch.as_tensor((df["type"].astype(str).to_numpy() == "spam").astype(np.int64))
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise SpamDataUnavailable(f"cannot read spambase from {p}: {e}") from None
    return FeatureSet("spambase", x, y, cols, str(p))


def load_spamassassin(path: str | Path | None = None, vocab: int = 1000, min_df: int = 3) -> FeatureSet:
    """The SpamAssassin emails of ``python3-pattern`` (label,text CSV; -1 = spam, 1 = ham)
    as binary bags of words over the ``vocab`` most frequent words (scikit-learn's
    ``CountVectorizer(binary=True)``; HTML tags count as words, as a spam filter sees them).

    Raises:
        SpamDataUnavailable: the file is missing or unreadable.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    p = Path(path) if path is not None else SPAMASSASSIN_CSV
    if not p.is_file():
        raise SpamDataUnavailable(f"SpamAssassin emails not found at {p}: apt-get install python3-pattern")
    csv.field_size_limit(2**31 - 1)
    texts, labels = [], []
    with p.open(encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.reader(f):
            if len(row) != 2 or row[0].strip() not in ("-1", "1"):
                raise SpamDataUnavailable(f"{p}: expected label,text rows with label -1 or 1, got {row[:1]}")
            labels.append(1 if row[0].strip() == "-1" else 0)
            texts.append(row[1])
    if not texts:
        raise SpamDataUnavailable(f"{p} holds no emails")
    cv = CountVectorizer(binary=True, max_features=vocab, min_df=min_df, lowercase=True,
                         token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    x = torch.as_tensor(cv.fit_transform(texts).toarray().astype(np.float32))
    return FeatureSet("spamassassin", x, torch.as_tensor(labels), list(cv.get_feature_names_out()), str(p))


def good_words(x: torch.Tensor, y: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """Feature indices ranked by how typical they are of ham: the log ratio of their
    (smoothed) document frequency in ham to that in spam, highest first. This is what a
    spammer who reads legitimate mail, but not the filter, can know (Lowd & Meek's
    "best N words" without queries)."""
    ham, spam = x[y == 0], x[y == 1]
    p_ham = (ham.sum(0) + smoothing) / (len(ham) + 2 * smoothing)
    p_spam = (spam.sum(0) + smoothing) / (len(spam) + 2 * smoothing)
    return torch.argsort(torch.log(p_ham) - torch.log(p_spam), descending=True, stable=True)


def good_word_attack(x: torch.Tensor, ranking: torch.Tensor, k: int) -> torch.Tensor:
    """Add to each email the first ``k`` words of ``ranking`` it does not contain yet."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    out = x.clone()
    absent = out[:, ranking] == 0
    take = absent & (absent.cumsum(1) <= k)
    rows, cols = take.nonzero(as_tuple=True)
    out[rows, ranking[cols]] = 1.0
    return out


def train_detector(kind: str, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
                   epochs: int = 60) -> Any:
    """A spam detector: ``"neural"`` (two hidden layers of 200 ReLUs, as Grosse et al.'s
    DREBIN network is shaped), ``"logistic"`` (logistic regression, a torch linear layer with
    weight decay) or ``"tree"`` (scikit-learn decision tree, depth 12). Neural and logistic
    are ``nn.Module`` returning two logits; the tree is a fitted ``DecisionTreeClassifier``."""
    if kind == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_depth=12, min_samples_leaf=2, random_state=seed).fit(
            x.numpy(), y.numpy())
    if kind not in ("neural", "logistic"):
        raise ValueError(f"unknown detector {kind!r}; use neural, logistic or tree")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d = x.shape[1]
        net: nn.Module = (nn.Sequential(nn.Linear(d, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                                        nn.Linear(200, 2)) if kind == "neural" else nn.Linear(d, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4 if kind == "logistic" else 0.0)
    bs = 64
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _predict(det: Any, x: torch.Tensor) -> torch.Tensor:
    if isinstance(det, nn.Module):
        with torch.no_grad():
            return det(x).argmax(1)
    return torch.as_tensor(det.predict(x.numpy()))


@dataclass
class EvasionResult:
    """:func:`spam_evasion` on one corpus.

    Attributes:
        data: JSON-ready numbers: accuracy per detector, and per attack row the evasion
            rate at each budget ``k`` (share of detected spam then classified ham).
    """

    data: dict[str, Any]


def spam_evasion(fs: FeatureSet, *, ks: Sequence[int] = (0, 1, 2, 5, 10, 20), test_share: float = 0.3,
                 seed: int = 0, epochs: int = 60) -> EvasionResult:
    """Train the three detectors on ``fs``, then evade them by adding at most ``k`` features.

    Rows: the add-only JSMA white-box on the neural and on the logistic detector; its
    examples crafted on the neural detector transferred to the logistic one and to the
    tree; and the good-word attack on all three. Evasion rates count only the test spam
    each detector catches (evading a detector that already misses the email means nothing).
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must lie in (0, 1), got {test_share}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0:
        raise ValueError(f"ks must be non-negative feature counts, got {ks}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(fs.y), generator=g)
    n_test = max(1, int(round(test_share * len(perm))))
    te, tr = perm[:n_test], perm[n_test:]
    x_tr, y_tr, x_te, y_te = fs.x[tr], fs.y[tr], fs.x[te], fs.y[te]
    dets = {kind: train_detector(kind, x_tr, y_tr, seed=seed, epochs=epochs)
            for kind in ("neural", "logistic", "tree")}
    acc = {k: float((_predict(d, x_te) == y_te).float().mean()) for k, d in dets.items()}
    spam = x_te[y_te == 1]
    caught = {k: _predict(d, spam) == 1 for k, d in dets.items()}
    ranking = good_words(x_tr, y_tr)
    rows: list[dict[str, Any]] = []

    def rate(det: str, x_adv: torch.Tensor) -> float:
        m = caught[det]
        return float((_predict(dets[det], x_adv[m]) == 0).float().mean()) if bool(m.any()) else math.nan

    ones = torch.ones(len(spam), dtype=torch.long)
    crafted: dict[str, dict[int, torch.Tensor]] = {"neural": {}, "logistic": {}}
    added: dict[str, list[float]] = {"neural": [], "logistic": []}
    for src in crafted:
        for k in ks:
            res = AddOnlyJSMA()(dets[src], spam, ones, threat=ThreatModel("l0", k, (0.0, 1.0)))
            crafted[src][k] = res.x_adv
            ok = res.success & caught[src]
            added[src].append(float(res.distance[ok].mean()) if bool(ok.any()) else math.nan)
    for src in crafted:
        rows.append({"attack": "add-only JSMA", "crafted_on": src, "detector": src, "kind": "white box",
                     "evasion": [rate(src, crafted[src][k]) for k in ks],
                     "mean_added_when_evading": added[src]})
    for dst in ("logistic", "tree"):
        rows.append({"attack": "add-only JSMA", "crafted_on": "neural", "detector": dst, "kind": "transfer",
                     "evasion": [rate(dst, crafted["neural"][k]) for k in ks]})
    for det in dets:
        rows.append({"attack": "good words", "crafted_on": "-", "detector": det, "kind": "black box",
                     "evasion": [rate(det, good_word_attack(spam, ranking, k)) for k in ks]})
    words = [fs.features[int(i)] for i in ranking[:10]]
    data = {"corpus": fs.name, "source": fs.source, "n": len(fs.y), "n_spam": int(fs.y.sum()),
            "features": fs.x.shape[1], "n_test": int(n_test), "n_test_spam": len(spam), "ks": ks,
            "accuracy": acc, "caught": {k: float(v.float().mean()) for k, v in caught.items()},
            "rows": rows, "good_words": words, "seed": seed}
    return EvasionResult(data)
