"""All ten analysis sections on digits (quick): they run, render, and report ours next to published.

The numbers come from the experiments layer (:mod:`advlab.experiments.analysis`, no figures,
no reporting import); the sections only add the figures.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
import torch

from advlab.experiments import ExperimentContext
from advlab.experiments.analysis import ANALYSES, AnalysisRun
from advlab.reporting.figures_analysis import analysis_figures
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections
from advlab.reporting.sections.analysis import TITLES, analysis_section

#: the ten analyses of this file (ANALYSES also holds plug-ins once their modules are imported)
TEN = {name: ANALYSES[name] for name in TITLES}
KEYS = [key for _, key in TEN.values()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def rendered(digits_train, digits_test, cache):
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=cache)
    secs = run_sections(ctx, KEYS)
    html = render_report("test", secs, {"version": "0", "dataset": "digits", "mode": "quick",
                                        "seconds": 0.0, "seed": 0, "notices": [], "date": "today"})
    return secs, html


def test_every_analysis_section_runs_and_renders(rendered):
    secs, html = rendered
    assert [s.key for s in secs] == KEYS
    for s in secs:
        json.dumps(s.data)  # JSON-ready results
        assert s.figures and all(u.startswith("data:image/png;base64,") for u in s.figures.values())
        block = html.split(f'<section id="{s.key}">', 1)[1].split("</section>", 1)[0]
        assert "(ours)" in block and re.search("published", block, re.I), s.key
        text = re.sub("<[^>]+>", " ", block)
        assert len(text.split()) > 80, s.key


def test_section_numbers_are_consistent(rendered):
    secs, _ = rendered
    by = {s.key: s.data for s in secs}
    assert by["cross_sections"]["rows"][2]["pieces"] == 1  # softmax regression is one linear piece
    fr = {r["kind"]: r["misclassified"] for r in by["decision_maps"]["rows"]}
    assert fr["random-random"] < fr["adversarial-random"]
    assert all(abs(r["l2"] - by["same_norm"]["radius"]) < 1e-2 * by["same_norm"]["radius"]
               for r in by["same_norm"]["rows"])
    lin = by["linear_models"]
    assert lin["adv_error"] >= lin["clean_error"]
    assert by["generative"]["far_posterior_gaussian"][1] > by["generative"]["far_posterior_laplace"][1]
    mb = by["model_based"]["rows"]
    assert mb[1]["best_predicted"] > mb[1]["best_true"]
    assert by["subspace"]["n"] <= by["subspace"]["n_total"]


def _plain(v: object) -> bool:
    """Numbers, strings, tensors, models and the analyses' dataclasses: nothing drawn."""
    if dataclasses.is_dataclass(v):
        return all(_plain(getattr(v, f.name)) for f in dataclasses.fields(v))
    if isinstance(v, dict):
        return all(_plain(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (int, float, str, torch.Tensor, torch.nn.Module))


def test_experiments_return_the_section_numbers_and_no_figures(rendered, digits_train, digits_test,
                                                               cache):
    secs, _ = rendered
    by = {s.key: s for s in secs}
    ctx = ExperimentContext(train=digits_train, test=digits_test, quick=True, cache_dir=cache)
    for name, (run, key) in TEN.items():
        res = run(ctx)
        assert isinstance(res, AnalysisRun) and _plain(res), name
        assert res.data == by[key].data, name  # same seed, same numbers as the section
        assert list(analysis_figures(res)) == list(by[key].figures), name


def test_experiments_layer_draws_nothing():
    code = ("import sys, advlab.experiments.analysis; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'matplotlib' "
            "or m.startswith('advlab.reporting') or m.startswith('advlab.cli')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unknown_analysis_and_result_are_errors(digits_train, digits_test, tmp_path):
    ctx = ExperimentContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown analysis 'nope'"):
        analysis_section("nope", ctx)
    with pytest.raises(TypeError, match="no figures for AnalysisRun"):
        analysis_figures(AnalysisRun({}))
