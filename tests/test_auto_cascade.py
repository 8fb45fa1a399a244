"""``--attacks auto``: the adaptive cascade (advlab.evaluation.auto)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from advlab.evaluation import auto_cascade, cascade, run_cascade
from advlab.threat import ThreatModel


class Staircase(nn.Module):
    """A linear classifier behind an input quantiser: zero gradients, easy for Square."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.stack([-torch.ones(16), torch.ones(16)]) * 2)
            self.lin.bias.zero_()
            self.lin.bias[0] = 32.0  # boundary: mean quantised pixel 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.round(x * 8).flatten(1) / 8)  # round: zero gradient everywhere


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    centre = torch.where(y[:, None] == 1, 0.8, 0.2)
    x = (centre + 0.04 * torch.randn(n, 16, generator=g)).clamp(0, 1).reshape(n, 1, 4, 4)
    return x, y


@pytest.fixture(scope="module")
def masked() -> tuple[nn.Module, torch.Tensor, torch.Tensor, ThreatModel]:
    torch.manual_seed(0)
    model = Staircase().eval()
    x, y = _data()
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    return model, x, y, ThreatModel("linf", 0.4)


def test_auto_needs_square_and_escalates(masked) -> None:  # type: ignore[no-untyped-def]
    """A model only Square breaks: auto is never above a single Square stage, and says why."""
    model, x, y, threat = masked
    square = cascade(model, x, y, ["square"], threat, seed=0, checks=False)
    assert square.robust_acc < square.clean_acc - 0.3  # the fixture really needs Square
    for checks in (True, False):  # checks fire (zero gradients) / the probe finds it
        res = auto_cascade(model, x, y, threat, seed=0, checks=checks)
        assert res.robust_acc <= square.robust_acc
        codes = [w.code for w in res.warnings]
        assert "auto_escalated" in codes
        assert res.stages[-1].name == ("square" if checks else "square2k")
        assert res.clean_acc == square.clean_acc
        # per-sample bookkeeping is consistent with the counts
        assert int(res.robust_correct.sum()) == round(res.robust_acc * len(y))
        assert bool((res.robust_correct <= res.clean_correct).all())
        assert res.stages[-1].robust_acc == pytest.approx(res.robust_acc)
        if not checks:
            assert [s.name for s in res.stages] == ["apgd-ce", "apgd-t3", "fab-t3", "square2k"]
            assert "black_box_beats_white_box" not in codes  # checks are off
        else:  # masked gradients: the targeted white-box stage is skipped
            assert [s.name for s in res.stages] == ["apgd-ce", "square"]
    d = res.to_dict()
    assert d["plan"] and "band" in d["plan"][1]


def test_auto_on_an_honest_model_skips_the_black_box(trained_softmax: nn.Module, digits_test) -> None:  # type: ignore[no-untyped-def]
    """Honest gradients: no escalation, far fewer passes than ``standard``, and never weaker
    than its own first stage run alone."""
    x, y = digits_test.tensors()
    x, y = x[:120], y[:120]
    threat = ThreatModel("linf", 0.03)
    auto = run_cascade(trained_softmax, x, y, "auto", threat, seed=0, batch_size=50)
    std = cascade(trained_softmax, x, y, "standard", threat, seed=0, batch_size=50)
    first = cascade(trained_softmax, x, y, ["apgd-ce"], threat, seed=0, batch_size=50)
    assert "auto_escalated" not in [w.code for w in auto.warnings]
    assert [s.name for s in auto.stages] == ["apgd-ce", "apgd-t3", "fab-t3", "square2k"]
    # Square ran on one margin band (it broke nothing there), not on every robust point
    left = round(auto.stages[2].robust_acc * len(y))
    assert auto.stages[3].attacked == min(left, max(10, -(-left // 20)))
    assert auto.stages[3].broken == 0
    assert auto.robust_acc <= first.robust_acc
    assert auto.robust_acc <= std.robust_acc + 2 / len(y)
    assert auto.stages[3].attacked < std.stages[2].attacked or std.stages[2].attacked == 0
    assert auto.passes + auto.forwards < std.passes + std.forwards


def test_auto_resumes_from_its_state_files(masked, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, x, y, threat = masked
    state = tmp_path / "run.state"
    one = auto_cascade(model, x, y, threat, seed=1, state_path=state, checks=False)
    assert state.is_file() and Path(f"{state}.t3-0").is_file() and Path(f"{state}.fab-0").is_file()
    two = auto_cascade(model, x, y, threat, seed=1, state_path=state, checks=False)
    assert two.resumed and not one.resumed
    assert torch.equal(one.robust_correct, two.robust_correct)
    assert torch.equal(one.broken_by, two.broken_by)


def test_plain_cascade_refuses_auto(masked) -> None:  # type: ignore[no-untyped-def]
    model, x, y, threat = masked
    with pytest.raises(ValueError, match="run_cascade"):
        cascade(model, x, y, "auto", threat)
    with pytest.raises(ValueError, match="band_fraction"):
        auto_cascade(model, x, y, threat, band_fraction=0)
    with pytest.raises(ValueError, match="min_band"):
        auto_cascade(model, x, y, threat, min_band=0)


def test_cascade_keeps_each_points_smallest_margin(trained_softmax: nn.Module, digits_test) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_test.tensors()
    x, y = x[:80], y[:80]
    res = cascade(trained_softmax, x, y, ["fgsm", "apgd-ce"], ThreatModel("linf", 0.03), seed=0)
    m = res.margin
    assert m is not None and m.shape == (80,)
    assert bool(torch.isinf(m[~res.clean_correct]).all())  # never attacked
    assert bool((m[res.robust_correct] > 0).all())  # still classified correctly
    broken = res.clean_correct & ~res.robust_correct
    assert broken.any() and bool((m[broken] <= 0).all())
    # the margin of a robust point is at most its clean margin (the stages only lower it)
    with torch.no_grad():
        lg = trained_softmax(x)
    clean = lg.gather(1, y[:, None]).squeeze(1) - lg.scatter(1, y[:, None], -1e9).max(1).values
    r = res.robust_correct
    assert bool((m[r] <= clean[r] + 1e-5).all())


def test_auto_attacks_the_smallest_margins_first(trained_softmax: nn.Module, digits_test) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_test.tensors()
    x, y = x[:120], y[:120]
    threat = ThreatModel("linf", 0.03)
    first = cascade(trained_softmax, x, y, ["apgd-ce"], threat, seed=0, batch_size=50)
    auto = auto_cascade(trained_softmax, x, y, threat, seed=0, batch_size=50, min_band=5,
                        band_fraction=0.1)
    assert torch.equal(auto.margin.isfinite(), first.margin.isfinite())
    # the first targeted band holds the lowest APGD-CE margins among the robust points
    rob = first.robust_correct.nonzero().squeeze(1)
    size = max(5, -(-int(rob.numel()) // 10))
    assert auto.stages[1].attacked >= size and "band" in auto.plan[1]
    # every point the targeted stage broke lies among the lowest-margin points it attacked
    attacked = set(rob[first.margin[rob].argsort(stable=True)[:auto.stages[1].attacked]].tolist())
    by_t3 = set((auto.broken_by == 1).nonzero().squeeze(1).tolist())
    assert by_t3 <= attacked
    assert auto.stages[1].attacked < rob.numel()  # and not every robust point
    assert auto.robust_acc <= first.robust_acc


def test_a_band_that_breaks_many_sends_the_rest_at_once(masked) -> None:  # type: ignore[no-untyped-def]
    """On the fixture only Square breaks, most points of every band fall: after two such
    bands the third holds every remaining robust point (one Square run, not many)."""
    model, x, y, threat = masked
    res = auto_cascade(model, x, y, threat, seed=0, checks=False, min_band=5, band_fraction=0.05)
    square = [p for p in res.plan if p.startswith("square")][0]
    assert any(f"in {k} margin band(s)" in square for k in (1, 2, 3)), square
    assert res.stages[-1].name == "square2k"
    assert res.stages[-1].attacked == round(res.stages[-2].robust_acc * len(y))  # all of them


def test_square_runs_again_on_its_bands_when_it_broke_points() -> None:
    """Square (2000) broke points in its bands: it runs once more, from a new random start, on
    the points still robust of the bands where it broke one, and the plan says so."""
    torch.manual_seed(0)
    model = Staircase().eval()
    x, y = _data()
    res = auto_cascade(model, x, y, ThreatModel("linf", 0.3), seed=0, checks=False)
    names = [s.name for s in res.stages]
    assert names == ["apgd-ce", "apgd-t3", "fab-t3", "square2k", "square2k-again"]
    bands, again = res.stages[3], res.stages[4]
    assert bands.broken > 0
    # the points still robust of the bands that broke one (here every band broke some)
    assert 0 < again.attacked <= bands.attacked - bands.broken
    assert int(res.robust_correct.sum()) == round(res.robust_acc * len(y))
    assert any(p.startswith("square2k-again") for p in res.plan)
    assert "auto_escalated" in [w.code for w in res.warnings]
    # a Square run of its own never beats auto here
    alone = cascade(model, x, y, ["square2k"], ThreatModel("linf", 0.3), seed=0, checks=False)
    assert res.robust_acc <= alone.robust_acc
