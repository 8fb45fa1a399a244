"""The bad-input table: every kind of bad input gets one line and the right exit code.

Each CLI row is ``(arguments, exit code, words the one-line message must contain)``; it runs
the real entry point (:func:`advlab.cli.app.main`) in-process. Each library row is
``(call, exception type, words)``. Usage errors exit 2; a failing model, disk or device is
named in one line; nothing prints a traceback. A new option or reader gets a row here.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import advlab.cli.app as app_module
from advlab.attacks import PGD, create_attack
from advlab.checkpoint import save_model
from advlab.data import load_dataset
from advlab.evaluation import evaluate
from advlab.threat import ThreatModel

MODELS_PY = '''
import torch
from torch import nn


class Flat(nn.Module):
    def __init__(self, fn=None, dtype=torch.float32, n_in=64):
        super().__init__()
        self.lin = nn.Linear(n_in, 10).to(dtype)
        self.fn = fn

    def forward(self, x):
        out = self.lin(x.flatten(1))
        return self.fn(out) if self.fn else out


def good():
    torch.manual_seed(0)
    return Flat()


def not_module():
    return 42


def raises_runtime():
    def boom(out):
        raise RuntimeError("CUDA kernel failed in my layer")
    return Flat(boom)


def raises_keyerror():
    def boom(out):
        return {"a": out}["logits"]
    return Flat(boom)


def float64():
    return Flat(dtype=torch.float64)


def wrong_size():
    return Flat(n_in=784)


def int_logits():
    return Flat(lambda out: out.argmax(1, keepdim=True).repeat(1, 10))


def returns_tuple():
    return Flat(lambda out: (out, out))


def probabilities():
    return Flat(lambda out: out.softmax(1))


def nan_logits():
    return Flat(lambda out: out * float("nan"))
'''


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory, trained_softmax: torch.nn.Module) -> Path:
    """A working folder with a trained 10-class digits checkpoint, user models and stray files."""
    root = tmp_path_factory.mktemp("bad_input")
    save_model(root / "ckpt", trained_softmax)
    (root / "models.py").write_text(MODELS_PY)
    (root / "notes.txt").write_text("my notes, not a state file\n")
    (root / "a_file").write_text("x")
    (root / "a_dir").mkdir()
    (root / "empty").mkdir()
    return root


@pytest.fixture
def run(place: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.chdir(place)
    monkeypatch.delenv("ADVLAB_DATA", raising=False)
    monkeypatch.delenv("ADVLAB_DEBUG", raising=False)
    monkeypatch.setenv("ADVLAB_CACHE", str(place / "cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    rng = torch.get_rng_state()

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(app_module, "console", Console(stderr=True, width=1000))
        monkeypatch.setattr(app_module, "out_console", Console(width=1000))
        monkeypatch.setattr(sys, "argv", ["advlab", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            app_module.main()
        out = capsys.readouterr()
        torch.set_rng_state(rng)
        return int(info.value.code or 0), out.out, out.err

    return call


E = ["eval", "ckpt", "--dataset", "digits", "--limit", "16"]  # a fast, valid evaluation
U = ["eval", "--dataset", "digits", "--limit", "16", "--attack", "fgsm", "--eps", "0.1"]

CLI_ROWS: list[tuple[str, list[str], int, str]] = [
    # --- options and values ---------------------------------------------------------------
    ("steps-0", E + ["--steps", "0"], 2, "steps"),
    ("step-size-and-rel", E + ["--step-size", "0.1", "--rel-step-size", "0.1"], 2, "step"),
    ("unknown-attack", E + ["--attack", "nope"], 2, "nope"),
    ("option-attack-lacks", E + ["--attack", "fgsm", "--steps", "10"], 2, "steps"),
    ("unknown-norm", E + ["--norm", "l3"], 2, "l3"),
    ("norm-attack-lacks", E + ["--attack", "pgd", "--norm", "l0", "--eps", "3"], 2, "--norm l0"),
    ("attack-needs-l0", E + ["--attack", "jsma-add", "--eps", "3"], 2, "--norm l0"),
    ("negative-eps", E + ["--eps", "-1"], 2, "eps"),
    ("cascade-with-steps", E + ["--attacks", "standard", "--steps", "10"], 2, "--steps"),
    ("unknown-cascade", E + ["--attacks", "nope"], 2, "nope"),
    ("batch-size-0", E + ["--batch-size", "0"], 2, "batch"),
    ("limit-0", E + ["--limit", "0"], 2, "limit"),
    ("set-unknown", E + ["--set", "foo=1"], 2, "foo"),
    ("set-bad-value", E + ["--set", "steps=abc"], 2, "steps"),
    ("set-no-equals", E + ["--set", "steps"], 2, "NAME=VALUE"),
    ("eps-curve-words", E + ["--eps-curve", "a,b"], 2, "--eps-curve"),
    ("bad-split", E + ["--split", "val"], 2, "val"),
    ("classes-negative", E + ["--classes=-1,3"], 2, "--classes"),
    ("classes-reversed", E + ["--classes", "7-3"], 2, "--classes"),
    ("classes-twice", E + ["--classes", "3,3"], 2, "twice"),
    ("classes-words", E + ["--classes", "cats"], 2, "--classes"),
    ("classes-missing", E + ["--classes", "3,12"], 2, "12"),
    ("not-an-int", E + ["--limit", "ten"], 2, ""),
    ("unknown-option", E + ["--epsilon", "0.3"], 2, ""),
    # --- training settings -------------------------------------------------------------------
    ("train-batch-0", ["train", "--dataset", "digits", "--out", "t1", "--batch-size", "0"], 2, "batch"),
    ("train-epochs-0", ["train", "--dataset", "digits", "--out", "t2", "--epochs", "0"], 2, "epochs"),
    ("train-lr-negative", ["train", "--dataset", "digits", "--out", "t3", "--lr", "-1"], 2, "lr"),
    ("train-model", ["train", "--dataset", "digits", "--out", "t4", "--model", "nope"], 2, "nope"),
    ("train-defense", ["train", "--dataset", "digits", "--out", "t5", "--defense", "nope"], 2, "nope"),
    ("train-optimizer", ["train", "--dataset", "digits", "--out", "t6", "--optimizer", "nope"], 2, "nope"),
    ("train-schedule", ["train", "--dataset", "digits", "--out", "t7", "--lr-schedule", "nope"], 2, "nope"),
    ("train-settings-list", ["train", "--dataset", "digits", "--out", "t8", "--settings", "[1]"], 2,
     "JSON object"),
    ("train-settings-bad", ["train", "--dataset", "digits", "--out", "t9", "--settings", "{bad"], 2,
     "JSON object"),
    ("train-resume-overwrite", ["train", "--dataset", "digits", "--out", "t10", "--resume", "--overwrite"],
     2, "contradict"),
    ("train-over-checkpoint", ["train", "--dataset", "digits", "--out", "ckpt"], 2, "--overwrite"),
    ("train-out-file", ["train", "--dataset", "digits", "--out", "a_file"], 2, "is a file"),
    ("train-curve-n", ["train", "--dataset", "digits", "--out", "t11", "--curve-n", "0"], 2, "curve"),
    ("train-labels-no-vat", ["train", "--dataset", "digits", "--out", "t12", "--labels", "50"], 2, "vat"),
    ("train-unknown-dataset", ["train", "--dataset", "imagenet", "--out", "t13"], 2, "imagenet"),
    ("train-alpha", ["train", "--dataset", "digits", "--out", "t14", "--defense", "fgsm", "--alpha", "2"],
     2, "alpha"),
    # --- models given by the user --------------------------------------------------------------
    ("model-missing-dir", ["eval", "nothing_here", "--dataset", "digits"], 2, "not found"),
    ("model-missing-file", ["eval", "nofile.py:good", "--dataset", "digits"], 2, "not found"),
    ("model-missing-fn", ["eval", "models.py:nofn", "--dataset", "digits"], 2, "nofn"),
    ("model-not-module", ["eval", "models.py:not_module", "--dataset", "digits"], 2, "nn.Module"),
    ("model-runtime-error", ["eval", "models.py:raises_runtime", *U[1:]], 2,
     "your model raised RuntimeError"),
    ("model-key-error", ["eval", "models.py:raises_keyerror", *U[1:]], 2, "your model raised KeyError"),
    ("model-float64", ["eval", "models.py:float64", *U[1:]], 2, "float64 parameters"),
    ("model-wrong-size", ["eval", "models.py:wrong_size", *U[1:]], 2, "(16, 1, 8, 8)"),
    ("model-int-logits", ["eval", "models.py:int_logits", *U[1:]], 2, "floating-point logits"),
    ("model-tuple", ["eval", "models.py:returns_tuple", *U[1:]], 2, "tuple"),
    ("model-probabilities", ["eval", "models.py:probabilities", *U[1:]], 2, "probabilities"),
    ("model-nan", ["eval", "models.py:nan_logits", *U[1:]], 2, "NaN"),
    ("model-classes-too-few", ["eval", "ckpt", "--dataset", "digits", "--limit", "16",
                               "--classes", "0,1,2"], 0, ""),
    # --- files: outputs, state, data -------------------------------------------------------------
    ("out-is-dir", E + ["--out", "a_dir"], 2, "is a directory"),
    ("out-unwritable", E + ["--out", "/proc/advlab-nope/r.json"], 2, "cannot write"),
    ("out-under-a-file", E + ["--out", "a_file/r.json"], 2, "is a file"),
    ("state-foreign", E + ["--attacks", "fast", "--state", "notes.txt"], 2, "--overwrite"),
    ("state-is-dir", E + ["--attacks", "fast", "--state", "a_dir"], 2, "is a directory"),
    ("attack-out-file", ["attack", "ckpt", "--dataset", "digits", "--out", "a_file"], 2, "is a file"),
    ("attack-target-range", ["attack", "ckpt", "--dataset", "digits", "--limit", "4", "--target", "10",
                             "--out", "atk"], 2, "--target"),
    ("lecture-out-file", ["lecture", "--dataset", "digits", "--out", "a_file"], 2, "is a file"),
    ("lecture-section", ["lecture", "--dataset", "digits", "--quick", "--sections", "nope", "--out", "L"],
     2, "nope"),
    ("data-missing", E[:2] + ["--dataset", "fashion-mnist", "--no-download"], 2, "fashion"),
    ("data-empty-dir", E[:2] + ["--dataset", "mnist", "--data-dir", "empty", "--no-download"], 2, "mnist"),
    ("data-download-fails", E[:2] + ["--dataset", "fashion-mnist"], 2, "fashion"),
    # --- other commands -------------------------------------------------------------------------
    ("info-attack", ["info", "--attack", "nope"], 2, "nope"),
    ("analyze-unknown", ["analyze", "nope"], 2, "nope"),
    ("serve-public-host", ["serve", "ckpt", "--host", "8.8.8.8"], 2, "loopback"),
    ("serve-in-shape", ["serve", "ckpt", "--in-shape", "a,b"], 2, "--in-shape"),
    ("unknown-command", ["frobnicate"], 2, ""),
]


@pytest.mark.parametrize(("args", "code", "words"), [r[1:] for r in CLI_ROWS],
                         ids=[r[0] for r in CLI_ROWS])
def test_cli_bad_input(run: Callable[..., tuple[int, str, str]], args: list[str], code: int,
                       words: str) -> None:
    got, _out, err = run(*args)
    assert "Traceback" not in err
    assert got == code, err
    if code == 0:
        return
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if not words:  # typer's own parse errors: its usage box, exit 2
        # click names the program after how Python was started ("python -m pytest" here)
        assert "Usage:" in err and "advlab" in err and not lines
        return
    assert len(lines) == 1, err
    assert words in lines[0], lines[0]
    assert "internal error" not in lines[0]



def test_cli_rows_cover_enough() -> None:
    assert len(CLI_ROWS) + len(LIB_ROWS) >= 60
    assert len({r[0] for r in CLI_ROWS}) == len(CLI_ROWS)


# ------------------------------------------------------------------------------ library rows

def _tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval(), \
        torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])


def _attack_with(attack: object = None, **call: object) -> Callable[[], object]:
    """Call ``attack`` (default PGD-2) on a tiny model; settings are checked at call time."""
    def go() -> object:
        model, x, y = _tiny()
        kwargs = {"threat": ThreatModel("linf", 0.1), **call}
        x = kwargs.pop("x", x)  # type: ignore[assignment]
        return (attack or PGD(steps=2))(model, x, y, **kwargs)  # type: ignore[operator]
    return go


LIB_ROWS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("threat-eps-bool", lambda: ThreatModel("linf", True), TypeError, "eps"),
    ("threat-eps-negative", lambda: ThreatModel("linf", -0.1), ValueError, "eps"),
    ("threat-norm", lambda: ThreatModel("l3", 0.1), ValueError, "l3"),
    ("pgd-steps-0", _attack_with(PGD(steps=0)), ValueError, "steps"),
    ("pgd-two-step-sizes", _attack_with(PGD(step_size=0.1, rel_step_size=0.1)), ValueError, "not both"),
    ("registry-unknown-option", lambda: create_attack("pgd", foo=1), ValueError, "foo"),
    ("registry-unknown-name", lambda: create_attack("nope"), ValueError, "nope"),
    ("float64-inputs", _attack_with(x=torch.rand(5, 1, 2, 2, dtype=torch.float64)), TypeError, "float64"),
    ("uint8-inputs", _attack_with(x=torch.zeros(5, 1, 2, 2, dtype=torch.uint8)), TypeError, "x.float()"),
    ("inputs-out-of-bounds", _attack_with(x=torch.rand(5, 1, 2, 2) * 255), ValueError, "outside"),
    ("numpy-generator", _attack_with(generator=np.random.default_rng(0)), TypeError, "generator"),
    ("int-generator", _attack_with(generator=3), TypeError, "generator"),
    ("evaluate-batch-0", lambda: evaluate(*_tiny(), PGD(steps=1), ThreatModel("linf", 0.1),
                                          batch_size=0), ValueError, "batch"),
    ("dataset-unknown", lambda: load_dataset("nope"), ValueError, "nope"),
    ("dataset-limit-0", lambda: load_dataset("digits", limit=0), ValueError, "limit"),
]


@pytest.mark.parametrize(("call", "kind", "words"), [r[1:] for r in LIB_ROWS],
                         ids=[r[0] for r in LIB_ROWS])
def test_library_bad_input(call: Callable[[], object], kind: type[Exception], words: str) -> None:
    with pytest.raises(kind) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg.strip() and words in msg, msg


# ------------------------------------------------------------------- what is not bad input

def test_classes_on_a_ten_class_model_keep_the_labels(run: Callable[..., tuple[int, str, str]],
                                                     place: Path) -> None:
    """``--classes 3,7`` on a 10-output model evaluates it on 3s and 7s with their own labels."""
    import json

    code, out, err = run("eval", "ckpt", "--dataset", "digits", "--classes", "3,7", "--attack", "fgsm",
                         "--eps", "0.05")
    assert code == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    from advlab.attacks import FGSM
    from advlab.checkpoint import load_model

    ds = load_dataset("digits", "test", classes=[3, 7])
    x, y = ds.tensors()
    ref = evaluate(load_model(place / "ckpt"), x, y, FGSM(), ThreatModel("linf", 0.05))
    assert got["n_examples"] == len(ds) > 50
    assert got["clean_acc"] == pytest.approx(ref.clean_acc)
    assert ref.clean_acc > 0.5  # renumbered labels would score near 0 here


def test_internal_error_is_exit_1_and_asks_for_a_report(run: Callable[..., tuple[int, str, str]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here a TypeError from inside torch) is not dressed up as the user's mistake."""
    import advlab.evaluation as ev

    def buggy(*args: object, **kwargs: object) -> object:
        return torch.cat(3)  # type: ignore[call-overload]

    monkeypatch.setattr(ev, "evaluate", buggy)
    code, _out, err = run(*E, "--attack", "fgsm")
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "internal error" in line and "--debug" in line
    assert "Traceback" not in err
    code, _out, err = run(*E, "--attack", "fgsm", "--debug")
    assert code == 1 and "Traceback" in err


def test_disk_errors_save_the_results_elsewhere(run: Callable[..., tuple[int, str, str]],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ENOSPC while writing results: one line, exit 1, and the results are in the named file."""
    import errno
    import json
    import tempfile

    import advlab.io as aio

    real = aio.atomic_write_json

    def full(path: Path, obj: object) -> None:
        if Path(path).name == "r.json" and "advlab-results" not in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(aio, "atomic_write_json", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _out, err = run(*E, "--attack", "fgsm", "--out", "r.json")
    assert code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "No space left" in line and "saved to" in line
    saved = Path(line.split("saved to ", 1)[1].split(" (")[0].strip())
    assert saved.parent == tmp_path
    assert json.loads(saved.read_text())["n_examples"] == 16


