"""``advlab analyze text-vat``: adversarial and virtual adversarial training on word embeddings
(:func:`advlab.analysis.text.text_vat` on Pang & Lee's sentence polarity with GloVe-50d).

Without the corpus (Debian ``python3-pattern``) or the word vectors (extra ``text``) the
analysis raises :class:`~advlab.analysis.text.TextUnavailable` and the lecture section says
how to install them.
"""

from __future__ import annotations

from dataclasses import dataclass

from advlab.analysis import text as tx
from advlab.experiments.analysis import AnalysisRun, _rounded, register_analysis
from advlab.experiments.context import ExperimentContext

__all__ = ["TextVATRun", "run_text_vat", "TEXT_EPS"]

#: L2 norm of the perturbation of the whole normalised embedded sentence. Miyato et al. use
#: eps = 5 on IMDB reviews of ~240 words in 256 dimensions (about 2% of the sequence's norm);
#: our sentences have ~20 words in 50 dimensions (norm ~30), so 1.0 is about 3%.
TEXT_EPS = 1.0


@dataclass
class TextVATRun(AnalysisRun):
    """:func:`run_text_vat`: test errors, flip shares and nearest words per training method."""


def run_text_vat(ctx: ExperimentContext, eps: float | None = None) -> TextVATRun:
    """The four training methods with all labels (two seeds; one in quick mode), and the
    semi-supervised pair with 200 labels plus the rest unlabeled."""
    texts, labels = tx.load_polarity()
    words, vectors = tx.load_glove()
    corpus = tx.build_corpus(texts, labels, words, vectors, max_len=48, seed=ctx.seed)
    seeds = (ctx.seed,) if ctx.quick else (ctx.seed, ctx.seed + 1)
    data = tx.text_vat(corpus, eps=eps or TEXT_EPS, epochs=2 if ctx.quick else 3, seeds=seeds)
    data["published"] = {"imdb_error": {"baseline": 0.0733, "adversarial": 0.0621,
                                        "virtual adversarial": 0.0591}}
    return TextVATRun(_rounded(data))


register_analysis("text-vat", run_text_vat, "text_vat")
