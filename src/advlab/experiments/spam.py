"""``advlab analyze spam-evasion``: evading spam detectors by adding features only
(:func:`advlab.analysis.spam.spam_evasion` on spambase and the SpamAssassin emails).

Without a corpus (or the ``rdata`` package for spambase) that corpus is left out with a
one-line note; without both, :class:`~advlab.analysis.spam.SpamDataUnavailable` is raised
and the lecture section shows how to install them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advlab.analysis import spam as sp
from advlab.experiments.analysis import AnalysisRun, _rounded, register_analysis
from advlab.experiments.context import ExperimentContext

__all__ = ["SpamEvasionRun", "run_spam_evasion", "SPAM_KS"]

#: budgets (added features) of the evasion curves
SPAM_KS = (0, 1, 2, 3, 5, 10, 20, 40)


@dataclass
class SpamEvasionRun(AnalysisRun):
    """:func:`run_spam_evasion`: ``data["corpora"]`` holds one :func:`spam_evasion` result per corpus."""


def run_spam_evasion(ctx: ExperimentContext) -> SpamEvasionRun:
    """The three detectors and the add-only attacks on every spam corpus found here."""
    corpora: list[dict[str, Any]] = []
    notes: list[str] = []
    for load in (sp.load_spambase, sp.load_spamassassin):
        try:
            fs = load()
        except sp.SpamDataUnavailable as e:
            notes.append(str(e))
            continue
        corpora.append(sp.spam_evasion(fs, ks=SPAM_KS, seed=ctx.seed, epochs=30 if ctx.quick else 60).data)
    if not corpora:
        raise sp.SpamDataUnavailable("no spam corpus found (" + "; ".join(notes) + ")")
    return SpamEvasionRun(_rounded({"corpora": corpora, "notes": notes, "ks": list(SPAM_KS)}))


register_analysis("spam-evasion", run_spam_evasion, "spam_evasion")
