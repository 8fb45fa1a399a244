"""Evading spam detectors by adding features: the add-only JSMA attack's known answers, the
good-word attack, the corpora readers and the lecture section."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from advlab.analysis import spam as sp
from advlab.attacks import AddOnlyJSMA, create_attack
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel


def _linear_detector(w_spam_minus_ham: list[float], bias: float) -> nn.Module:
    """Two logits whose difference spam - ham is ``w . x + bias``."""
    lin = nn.Linear(len(w_spam_minus_ham), 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[1] = torch.tensor(w_spam_minus_ham)
        lin.bias[1] = bias
    return lin.eval()


def test_on_a_linear_detector_it_adds_the_most_ham_like_features_first_and_just_enough() -> None:
    # features 2, 4, 0 lower the spam score by 5, 3, 2; feature 1 raises it; feature 3 is present
    det = _linear_detector([-2.0, 1.0, -5.0, -4.0, -3.0], bias=9.5)
    x = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])  # score -4 + 9.5 = 5.5 > 0: spam
    r = AddOnlyJSMA()(det, x, torch.tensor([1]), threat=ThreatModel("l0", 10, (0.0, 1.0)))
    # greedy: add 2 (score 0.5), then 4 (score -2.5 < 0: ham) and stop
    assert r.x_adv.tolist() == [[0.0, 0.0, 1.0, 1.0, 1.0]]
    assert bool(r.success[0]) and r.distance.tolist() == [2.0] and r.info["added"].tolist() == [2]
    assert r.passes.tolist() == [2]
    # one feature is not enough: the budget is respected and the attack fails
    r1 = AddOnlyJSMA()(det, x, torch.tensor([1]), threat=ThreatModel("l0", 1, (0.0, 1.0)))
    assert r1.x_adv.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]] and not bool(r1.success[0])


def test_it_never_removes_a_feature_and_stops_when_nothing_helps() -> None:
    det = _linear_detector([1.0, 2.0, 3.0], bias=0.5)  # every feature makes it more spammy
    x = torch.tensor([[1.0, 0.0, 0.0]])
    r = AddOnlyJSMA()(det, x, torch.tensor([1]), threat=ThreatModel("l0", 3, (0.0, 1.0)))
    assert torch.equal(r.x_adv, x) and not bool(r.success[0]) and r.passes.tolist() == [1]
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(20, 30, generator=g) < 0.3).float()
    net = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    labels = net(xs).argmax(1).detach()
    out = create_attack("jsma-add", per_step=2)(net, xs, labels, threat=ThreatModel("l0", 5, (0.0, 1.0)))
    assert bool((out.x_adv >= xs).all())  # add-only: a superset of the features
    assert set(out.x_adv.unique().tolist()) <= {0.0, 1.0}  # binary stays binary
    assert int(out.distance.max()) <= 5


def test_targeted_add_only_reaches_the_target_on_a_linear_model() -> None:
    lin = nn.Linear(6, 3, bias=False).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 0, 2, 2, 0, 0], [0, 0, 0, 0, 3, 3]]))
    x = torch.tensor([[1.0, 1, 0, 0, 0, 0]])
    r = AddOnlyJSMA()(lin, x, TargetedMisclassification(torch.tensor([2])),
                      threat=ThreatModel("l0", 4, (0.0, 1.0)))
    # margin to the best other class (0, logit 2): features 4 or 5 add 3, one is enough
    assert bool(r.success[0]) and r.x_adv[0, 4:].sum() == 1 and r.x_adv[0, 2:4].sum() == 0
    assert r.distance.tolist() == [1.0]


def test_good_words_rank_ham_words_first_and_the_attack_adds_only_absent_ones() -> None:
    x = torch.tensor([[1.0, 0, 1, 0], [1.0, 0, 1, 0], [0, 1, 0, 1], [0, 1, 1, 0]])
    y = torch.tensor([1, 1, 0, 0])  # word 1 only in ham, word 0 only in spam
    rank = sp.good_words(x, y)
    assert int(rank[0]) == 1 and int(rank[-1]) == 0
    out = sp.good_word_attack(torch.tensor([[0.0, 1, 0, 0]]), rank, 1)
    assert out.sum() == 2 and out[0, 1] == 1  # word 1 was present: the next absent one is added
    assert torch.equal(sp.good_word_attack(x, rank, 0), x)
    with pytest.raises(ValueError, match="k"):
        sp.good_word_attack(x, rank, -1)


def test_corpus_readers(tmp_path: Path) -> None:
    csv = tmp_path / "spam.csv"
    csv.write_text('"-1","Buy cheap pills now, cheap cheap"\n"1","Meeting notes for the kernel patch"\n'
                   '"-1","cheap pills cheap offer"\n"1","kernel patch review meeting"\n', encoding="utf-8")
    fs = sp.load_spamassassin(csv, vocab=50, min_df=2)
    assert fs.y.tolist() == [1, 0, 1, 0] and set(fs.x.unique().tolist()) <= {0.0, 1.0}
    assert "cheap" in fs.features and "kernel" in fs.features
    assert fs.x[0, fs.features.index("cheap")] == 1 and fs.x[1, fs.features.index("cheap")] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text('"spam","text"\n', encoding="utf-8")
    with pytest.raises(sp.SpamDataUnavailable, match="label"):
        sp.load_spamassassin(bad)
    with pytest.raises(sp.SpamDataUnavailable, match="python3-pattern"):
        sp.load_spamassassin(tmp_path / "missing.csv")
    with pytest.raises(sp.SpamDataUnavailable, match="r-cran-kernlab"):
        sp.load_spambase(tmp_path / "missing.rda")
    with pytest.raises(ValueError, match="0 or 1"):
        sp.FeatureSet("t", torch.tensor([[0.5]]), torch.tensor([1]), ["w"], "here")


def _synthetic(n: int = 240, d: int = 40, seed: int = 0) -> sp.FeatureSet:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    p = torch.where(y[:, None] == 1, torch.linspace(0.6, 0.05, d), torch.linspace(0.05, 0.6, d))
    x = (torch.rand(n, d, generator=g) < p).float()
    return sp.FeatureSet("synthetic", x, y, [f"w{i}" for i in range(d)], "made here")


def test_spam_evasion_curves_start_at_zero_and_grow_with_the_budget() -> None:
    d = sp.spam_evasion(_synthetic(), ks=(0, 1, 3, 10), epochs=60).data
    assert d["accuracy"]["neural"] > 0.8 and d["accuracy"]["logistic"] > 0.8
    kinds = {(r["attack"], r["crafted_on"], r["detector"]) for r in d["rows"]}
    assert len(kinds) == 7
    for r in d["rows"]:
        ev = r["evasion"]
        assert ev[0] == 0.0  # k = 0 changes nothing: every caught email stays caught
        if r["kind"] != "transfer":  # greedy attacks: a larger budget never evades fewer
            assert all(a <= b + 1e-9 for a, b in zip(ev, ev[1:], strict=False))
    white = next(r for r in d["rows"] if r["detector"] == "neural" and r["kind"] == "white box")
    assert white["evasion"][-1] > 0.5
    with pytest.raises(ValueError, match="ks"):
        sp.spam_evasion(_synthetic(), ks=(-1, 2))


def test_the_section_runs_and_renders_or_says_how_to_install(digits_train, digits_test, tmp_path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from advlab.reporting.html import render_report
    from advlab.reporting.lecture import LectureContext, run_sections

    meta = {"version": "0", "dataset": "digits", "mode": "quick", "seconds": 0.0, "seed": 0,
            "notices": [], "date": "today"}
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    monkeypatch.setattr(sp, "load_spambase", lambda: _synthetic(seed=1))

    def missing() -> sp.FeatureSet:
        raise sp.SpamDataUnavailable("SpamAssassin emails not found: apt-get install python3-pattern")

    monkeypatch.setattr(sp, "load_spamassassin", missing)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    (sec,) = run_sections(ctx, ["spam_evasion"])
    assert torch.equal(torch.get_rng_state(), before)  # the section leaves the global RNG alone
    assert [c["corpus"] for c in sec.data["corpora"]] == ["synthetic"]
    html = render_report("t", [sec], meta)
    assert "data:image/png;base64" in html and "python3-pattern" in html and "Lowd" in html

    def none() -> sp.FeatureSet:
        raise sp.SpamDataUnavailable("spambase not found: apt-get install r-cran-kernlab")

    monkeypatch.setattr(sp, "load_spambase", none)
    (sec,) = run_sections(ctx, ["spam_evasion"])
    assert "r-cran-kernlab" in sec.data["note"] and "python3-pattern" in sec.data["note"]
    assert "r-cran-kernlab" in render_report("t", [sec], meta)
