"""advlab: adversarial examples and adversarial training with PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advlab._version import __version__

__all__ = ["__version__", "evaluate"]

if TYPE_CHECKING:
    from advlab.reporting.robustness import RobustnessReport


def evaluate(model: Any, x: Any, y: Any, *, threat: Any, attacks: Any = "standard",
             device: Any = None, **kwargs: Any) -> RobustnessReport:
    """One call: the worst-case robust accuracy of ``model`` on ``(x, y)``, with a report.

    The counterpart of AutoAttack's ``run_standard_evaluation``: settings as arguments,
    data at call time. (Not to be confused with :func:`advlab.evaluation.evaluate`,
    which scores one configured attack and returns an ``EvalResult``.)

    Args:
        model: a classifier returning logits on inputs in ``threat.bounds`` (wrap a
            model that expects normalised inputs with
            :class:`advlab.models.normalize.Normalized`).
        x, y: inputs ``(N, ...)`` and int64 labels ``(N,)``.
        threat: a :class:`advlab.threat.ThreatModel`, e.g. ``ThreatModel("linf", 8 / 255)``.
        attacks: a cascade preset (``"standard"``, ``"fast"``, ``"autoattack"``), a
            comma-separated list such as ``"apgd-ce,square"``, or one
            :class:`advlab.attacks.Attack` instance.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``: model and data are moved
            there first (explicitly, once). ``None``: used where they are.
        **kwargs: ``seed`` (0), ``batch_size`` (500), ``eps_curve`` (``"default"``: eps
            times 0, 0.25, 0.5, 1, 2; a list; or None), ``classes`` (class names),
            ``n_samples`` (8), ``state_path`` (resumable state), ``model_name``,
            ``data_name``; see :func:`advlab.evaluation.report.robustness_evaluation`.

    Returns:
        :class:`advlab.reporting.robustness.RobustnessReport` with ``.robust_accuracy``,
        ``.clean_accuracy``, ``.per_sample``, ``.stages``, ``.curve``, ``.warnings``,
        ``.to_json(path)`` and ``.to_html(path)``.

    Example:
        >>> import advlab
        >>> from advlab.threat import ThreatModel
        >>> report = advlab.evaluate(model, x, y, threat=ThreatModel("linf", 8 / 255))  # doctest: +SKIP
        >>> report.robust_accuracy, report.to_html("report.html")  # doctest: +SKIP
    """
    from advlab.reporting.robustness import evaluate as _evaluate

    return _evaluate(model, x, y, threat=threat, attacks=attacks, device=device, **kwargs)
