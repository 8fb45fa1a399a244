"""All ten analysis sections on digits (quick): they run, render, and report ours next to published."""

from __future__ import annotations

import json
import re

import pytest

from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections
from advlab.reporting.sections.analysis import ANALYSES

KEYS = [key for _, key in ANALYSES.values()]


@pytest.fixture(scope="module")
def rendered(digits_train, digits_test, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("models")
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
