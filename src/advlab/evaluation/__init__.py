"""Evaluation: metrics, accuracy-vs-eps curves."""

from advlab.evaluation.curves import AccuracyCurve, accuracy_vs_eps
from advlab.evaluation.metrics import EvalResult, evaluate, predict

__all__ = ["AccuracyCurve", "accuracy_vs_eps", "EvalResult", "evaluate", "predict"]
