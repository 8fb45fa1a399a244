"""Evaluation: metrics, accuracy-vs-eps curves."""

from advlab.evaluation.curves import AccuracyCurve, accuracy_vs_eps
from advlab.evaluation.metrics import EvalResult, evaluate, predict

__all__ = ["AccuracyCurve", "accuracy_vs_eps", "EvalResult", "evaluate", "predict"]

# issue 3: worst case over attacks (resumable cascade) and gradient-masking checks
from advlab.evaluation.cascade import CascadeResult, StageLog, cascade, make_stages  # noqa: E402
from advlab.evaluation.checks import CheckWarning, check_model  # noqa: E402

__all__ += ["CascadeResult", "StageLog", "cascade", "make_stages", "CheckWarning", "check_model"]

# issue 14: the adaptive cascade (--attacks auto)
from advlab.evaluation.auto import auto_cascade, run_cascade  # noqa: E402

__all__ += ["auto_cascade", "run_cascade"]
