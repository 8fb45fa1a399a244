"""``advlab analyze <name>``: JSON + PNG outputs, option validation, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advlab.cli.cmd_analysis import ANALYSIS_NAMES
from advlab.experiments.analysis import all_analyses


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advlab", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_every_analysis_has_a_registered_section_and_template():
    from advlab.reporting.lecture import SECTIONS, load_sections

    load_sections()
    keys = {k for k, _, _ in SECTIONS}
    templates = Path(__file__).resolve().parents[1] / "src/advlab/reporting/templates/sections"
    from advlab.experiments.analysis import all_analyses

    analyses = all_analyses()
    assert len(analyses) >= 10
    assert set(analyses) == set(ANALYSIS_NAMES)  # the CLI's help lists every analysis
    for _, key in analyses.values():
        assert key in keys and (templates / f"{key}.html.j2").is_file()


def test_analyze_generative_writes_json_and_png(tmp_path: Path, cli_env: dict[str, str]):
    out = tmp_path / "res"
    p = _run(["analyze", "generative", "--dataset", "digits", "--out", str(out), "--n", "500"],
             cli_env)
    assert p.returncode == 0, p.stderr
    d = json.loads((out / "generative.json").read_text())
    assert d["analysis"] == "generative" and d["params"] == {"n": 500}
    assert d["data"]["n"] == 500
    assert d["data"]["far_posterior_gaussian"][1] > d["data"]["far_posterior_laplace"][1]
    png = out / d["figures"][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.name for f in out.iterdir()) == sorted(["generative.json", *d["figures"]])
    assert json.loads(p.stdout)["analysis"] == "generative"


def test_analyze_same_norm_trains_and_caches_the_cnn(tmp_path: Path, cli_env: dict[str, str]):
    out = tmp_path / "res"
    args = ["analyze", "same-norm", "--dataset", "digits", "--quick", "--out", str(out)]
    p = _run(args, cli_env)
    assert p.returncode == 0, p.stderr
    assert "training cnn" in p.stderr
    d = json.loads((out / "same-norm.json").read_text())
    rows = d["data"]["rows"]
    assert len(rows) == 4
    assert all(abs(r["l2"] - d["data"]["radius"]) < 1e-2 * d["data"]["radius"] for r in rows)
    again = _run(args, cli_env)
    assert again.returncode == 0 and "using cached cnn" in again.stderr
    assert json.loads((out / "same-norm.json").read_text())["data"] == d["data"]


def test_analyze_unknown_name_is_a_one_line_error(cli_env):
    p = _run(["analyze", "nope", "--dataset", "digits"], cli_env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    head = "error: unknown analysis 'nope'; use one of "
    assert line.startswith(head)
    # plug-ins register in import order, which differs between this process and the CLI's
    assert set(line[len(head):].split(", ")) == set(all_analyses())


@pytest.mark.parametrize(("args", "message"), [
    (["analyze", "same-norm", "--n", "5"], "--n does not apply to the same-norm analysis"),
    (["analyze", "subspace", "--eps", "-1"], "--eps must be > 0"),
    (["analyze", "subspace", "--n", "0"], "--n must be a positive integer"),
])
def test_analyze_validates_options_before_any_work(args, message, tmp_path):
    from typer.testing import CliRunner

    from advlab.cli.app import UsageError, app

    res = CliRunner().invoke(app, [*args, "--dataset", "digits", "--out", str(tmp_path / "o"),
                                   "--cache-dir", str(tmp_path / "c")])
    assert isinstance(res.exception, UsageError) and str(res.exception) == message
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_sigmoid_objective_is_per_class_binary_cross_entropy():
    import torch
    import torch.nn.functional as F

    from advlab.experiments import MODEL_RECIPES, SigmoidObjective

    lin = torch.nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 3, 1, 1, 2])
    loss, logits, passes = SigmoidObjective()(lin, x, y, torch.Generator())
    z = lin(x)
    manual = sum(F.binary_cross_entropy_with_logits(z[i, c], torch.tensor(float(c == y[i])))
                 for i in range(5) for c in range(4)) / 5
    assert torch.allclose(loss, manual) and torch.equal(logits, z) and passes == 1
    recipe = MODEL_RECIPES["analysis_cnn_sigmoid"]
    assert recipe["objective"] is SigmoidObjective and recipe["model"] == "cnn"
    assert MODEL_RECIPES["analysis_logistic37"]["classes"] == [3, 7]


def test_analyze_model_option_replaces_the_lecture_cnn(tmp_path: Path):
    import torch
    from typer.testing import CliRunner

    from advlab.checkpoint import save_model
    from advlab.cli.app import app
    from advlab.models import create_model

    torch.manual_seed(0)
    net = create_model("cnn", in_shape=(1, 8, 8), channels=(2, 3), fc=5)
    save_model(tmp_path / "ckpt", net)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["analyze", "cross-section", "--dataset", "digits", "--quick",
                                   "--model", str(tmp_path / "ckpt"), "--out", str(out),
                                   "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    d = json.loads((out / "cross-section.json").read_text())
    assert d["model"] == str(tmp_path / "ckpt")
    cnn_rows = [r for r in d["data"]["rows"] if r["path"].startswith("CNN")]
    # the given network's units: ReLU 2*8*8 + 3*4*4 + 5, max-pool windows 2*4*4 + 3*2*2
    assert [r["units"] for r in cnn_rows] == [225, 225]
    assert not any(p.name.startswith("digits-cnn-") for p in (tmp_path / "c" / "models").iterdir())


def test_plugin_sections_run_in_a_fresh_process(tmp_path: Path) -> None:
    """The lecture's plug-in sections find their analyses without a test importing them first."""
    import subprocess
    import sys

    code = ("from advlab.reporting.sections.analysis import analysis_section\n"
            "import advlab.experiments.analysis as xa\n"
            "assert 'robust-class-sweep' not in xa.ANALYSES\n"
            "try:\n    analysis_section('robust-class-sweep', None)\n"
            "except AttributeError:\n    pass  # got as far as running it (ctx is None)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
