"""Report sections for issue 5: why adversarial examples exist (registered with @section).

Each section runs one experiment of :mod:`advlab.experiments.analysis` (numbers and analysis
results), draws its figures with :mod:`advlab.reporting.figures_analysis` and hands both to
its template ``templates/sections/<key>.html.j2``.
"""

from __future__ import annotations

from typing import Any

from advlab.experiments import analysis as xa
from advlab.reporting import figures_analysis as fa
from advlab.reporting.figures import figure_to_data_uri
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section

__all__ = ["TITLES", "analysis_section"]


def analysis_section(name: str, ctx: LectureContext, **params: Any) -> Section:
    """Run the analysis ``name`` (a key of :data:`~advlab.experiments.analysis.ANALYSES`) as a section.

    Args:
        name: the ``advlab analyze`` name, e.g. ``"cross-section"``.
        ctx: data, cached models and budget.
        **params: passed to the experiment (e.g. ``n``, ``eps``).

    Returns:
        The section: the experiment's JSON-ready numbers and its figures as data URIs.

    Raises:
        ValueError: ``name`` is not a known analysis.
    """
    analyses = xa.all_analyses()
    if name not in analyses:
        raise ValueError(f"unknown analysis {name!r}; use one of {', '.join(analyses)}")
    run, key = analyses[name]
    result = run(ctx, **params)
    figures = {k: figure_to_data_uri(fig, dpi=fa.FIGURE_DPI)
               for k, fig in fa.analysis_figures(result).items()}
    return Section(key, "", data=result.data, figures=figures)


def optional_analysis_section(name: str, key: str, ctx: LectureContext,
                              missing: type[Exception]) -> Section:
    """:func:`analysis_section`, or section ``key`` holding the one-line note of ``missing``
    (optional data or an extra not installed) so the report still renders."""
    try:
        return analysis_section(name, ctx)
    except missing as e:
        return Section(key, "", data={"note": str(e)})


#: report heading of each analysis section, in report order (``advlab analyze`` name -> title)
TITLES: dict[str, str] = {
    "cross-section": "Why adversarial examples exist: linear pieces along a 1-D cross section",
    "decision-map": "Adversarial examples live in broad subspaces: 2-D decision maps",
    "same-norm": "Same L2 norm, different effect: why the max norm is the constraint",
    "linear": "Linear models: logistic regression on 3s vs 7s and the sign of its weights",
    "class-sweep": "Sweeping one 9 through every class: softmax vs RBF, and gradient ascent",
    "rbf": "RBF networks resist adversarial examples (and pay in accuracy)",
    "noise": "Noise is classified as something: the rubbish class",
    "subspace": "The adversarial subspace is about 25-dimensional (GAAS)",
    "generative": "Generative models are not enough: same likelihood, different posteriors",
    "model-based": "Model-based optimization finds adversarial examples for the model",
}


def _register(name: str) -> None:
    """Register the lecture section of the analysis ``name`` (under its section key)."""

    def run(ctx: LectureContext) -> Section:
        return analysis_section(name, ctx)

    run.__name__ = run.__qualname__ = f"{xa.ANALYSES[name].section}_section"
    section(xa.ANALYSES[name].section, TITLES[name])(run)


for _name in TITLES:
    _register(_name)
