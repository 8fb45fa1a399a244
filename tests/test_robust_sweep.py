"""The robust class sweep: judge agreement counts exactly, and the section runs and renders."""

from __future__ import annotations

import torch
from torch import nn

from advlab.analysis.class_sweep import ClassSweep
from advlab.experiments.robust_sweep import sweep_agreement
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections


class _Fixed(nn.Module):
    """Calls every image the class written in its first pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x.flatten(1)[:, 0].round().long(), 3).float() * 10


def _sweep(label: int, judged_as: list[int], success: list[bool]) -> ClassSweep:
    images = torch.zeros(3, 1, 2, 2)
    images[:, 0, 0, 0] = torch.tensor(judged_as, dtype=torch.float)
    return ClassSweep(x=torch.zeros(1, 2, 2), label=label, targets=torch.arange(3),
                      eps_needed=torch.zeros(3), images=images, success=torch.tensor(success),
                      target_confidence=torch.ones(3), l2=torch.zeros(3))


def test_agreement_is_counted_over_reached_other_targets() -> None:
    # source 0: targets 1 and 2 reached; the judge calls them 1 (agrees) and 0 (keeps source)
    a = _sweep(0, judged_as=[0, 1, 0], success=[True, True, True])
    # source 1: only target 2 reached (target 0 failed); the judge calls it 2
    b = _sweep(1, judged_as=[1, 1, 2], success=[False, True, True])
    stats = sweep_agreement([a, b], _Fixed())
    assert stats["n_targets"] == 4 and stats["n_reached"] == 3
    assert stats["reached"] == 0.75
    assert abs(stats["judge_agrees"] - 2 / 3) < 1e-9
    assert abs(stats["judge_keeps_source"] - 1 / 3) < 1e-9


def test_section_runs_on_digits_and_renders(digits_train, digits_test, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    (sec,) = run_sections(ctx, ["robust_class_sweep"])
    rows = sec.data["rows"]
    assert [r["recipe"] for r in rows] == ["cnn", "cnn_fgsmrs"]
    for r in rows:
        assert 0 <= r["judge_agrees"] <= 1 and r["n_targets"] == 9 * sec.data["n_sources"]
    html = render_report("t", [sec], {"version": "0", "dataset": "digits", "mode": "quick",
                                      "seconds": 0.0, "seed": 0, "notices": [], "date": "today"})
    assert "judge agrees with the target" in html and "data:image/png;base64" in html
