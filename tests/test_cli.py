"""Tests for the ``advlab`` command line.

The commands that do work run as ``python -m advlab`` subprocesses; most bad-input cases call
the same entry point (``advlab.cli.app.main``) in-process, which is much faster. Every run gets
its own cache (``ADVLAB_CACHE``) and working directory under ``tmp_path``, and downloads are
blocked (a proxy on a closed local port for subprocesses, a patched ``urlopen`` in-process),
so nothing is written outside ``tmp_path`` and nothing reaches the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors import safe_open
from safetensors.torch import load_file

import advlab
import advlab.cli.app as app_module
from advlab.attacks import FGSM
from advlab.checkpoint import load_model, save_model
from advlab.data import available_datasets, load_dataset
from advlab.evaluation import evaluate
from advlab.models import available_models, create_model
from advlab.threat import ThreatModel

ROBUSTBENCH_FIELDS = ("clean_acc", "robust_acc", "eps", "threat_model", "n_examples", "seed",
                      "attack")


def advlab_cli(args: list[str], cwd: Path, env: dict[str, str],
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advlab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def module_env(workdir: Path, make_cli_env: Callable[[Path], dict[str, str]]) -> dict[str, str]:
    return make_cli_env(workdir)


@pytest.fixture(scope="module")
def trained(workdir: Path, module_env: dict[str, str]) -> tuple[Path, str]:
    """``advlab train`` on digits, once per module: (checkpoint dir, stdout)."""
    proc = _ok(advlab_cli(["train", "--dataset", "digits", "--model", "softmax", "--epochs", "1",
                           "--lr", "0.03", "--out", "ckpt"], workdir, module_env))
    return workdir / "ckpt", proc.stdout


# --------------------------------------------------------------------------- happy paths


def test_train_writes_a_loadable_checkpoint(trained: tuple[Path, str]) -> None:
    ckpt, stdout = trained
    assert (ckpt / "model.safetensors").is_file()
    meta = json.loads((ckpt / "model.json").read_text())
    assert meta["model"] == "softmax"
    assert meta["settings"]["in_shape"] == [1, 8, 8]
    assert meta["settings"]["num_classes"] == 10
    assert meta["dataset"] == "digits" and meta["seed"] == 0
    assert meta["epochs_done"] == 1 and meta["passes"] == 1437
    assert meta["advlab_version"] == advlab.__version__
    summary = json.loads(stdout)
    assert summary["epochs"] == 1 and summary["passes"] == 1437
    test = load_dataset("digits", "test")
    x, y = test.tensors()
    model = load_model(ckpt)
    acc = float((model(x).argmax(1) == y).float().mean())
    assert summary["test_acc"] == pytest.approx(acc)
    assert meta["metrics"]["test_acc"] == pytest.approx(acc)
    assert acc > 0.8


def test_eval_writes_robustbench_json(trained: tuple[Path, str], workdir: Path,
                                      module_env: dict[str, str]) -> None:
    ckpt, _ = trained
    _ok(advlab_cli(["eval", str(ckpt), "--dataset", "digits", "--attack", "fgsm", "--eps", "0.1",
                    "--seed", "5", "--out", "r.json"], workdir, module_env))
    d = json.loads((workdir / "r.json").read_text())
    for key in ROBUSTBENCH_FIELDS:
        assert key in d, key
    assert d["threat_model"] == "linf" and d["eps"] == 0.1 and d["seed"] == 5
    assert d["n_examples"] == 360 and d["dataset"] == "digits"
    assert d["attack"]["attack"] == "FGSM"
    # the same numbers as the library on the same checkpoint and data
    x, y = load_dataset("digits", "test").tensors()
    r = evaluate(load_model(ckpt), x, y, FGSM(), ThreatModel("linf", 0.1))
    assert d["clean_acc"] == pytest.approx(r.clean_acc)
    assert d["robust_acc"] == pytest.approx(r.robust_acc)
    assert d["robust_acc"] < d["clean_acc"]


def test_attack_writes_uint8_adversarials_inside_the_ball(
    trained: tuple[Path, str], workdir: Path, module_env: dict[str, str]
) -> None:
    ckpt, _ = trained
    eps = 0.1
    _ok(advlab_cli(["attack", str(ckpt), "--dataset", "digits", "--limit", "16", "--eps",
                    str(eps), "--steps", "10", "--out", "A"], workdir, module_env))
    out = workdir / "A"
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tensors = load_file(str(out / "adversarials.safetensors"))
    x_adv = tensors["x_adv"]
    clean = load_dataset("digits", "test", limit=16)
    assert x_adv.dtype == torch.uint8 and x_adv.shape == (16, 1, 8, 8)
    assert torch.equal(tensors["labels"], clean.labels)
    delta = (x_adv.int() - clean.images.int()).abs()
    assert int(delta.max()) <= int(eps * 255)  # rounded toward zero: inside the ball
    assert int(delta.max()) > 0
    with safe_open(str(out / "adversarials.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["threat"])["eps"] == eps
    # the stored predictions are the model's predictions on the stored uint8 images
    model = load_model(ckpt)
    with torch.no_grad():
        assert torch.equal(model(x_adv.float() / 255).argmax(1), tensors["adv_pred"])
        assert torch.equal(model(clean.images.float() / 255).argmax(1), tensors["clean_pred"])
    summary = json.loads((out / "attack.json").read_text())
    assert summary["n_examples"] == 16
    assert summary["success_rate_uint8"] == pytest.approx(
        float((tensors["adv_pred"] != clean.labels).float().mean()))


def test_eval_reads_mnist_from_data_dir(tmp_path: Path, cli_env: dict[str, str],
                                        mnist_dir: Path) -> None:
    torch.manual_seed(0)
    model = create_model("softmax", in_shape=(1, 28, 28), num_classes=10).eval()
    save_model(tmp_path / "m28", model)
    _ok(advlab_cli(["eval", "m28", "--dataset", "mnist", "--data-dir", str(mnist_dir),
                    "--limit", "64", "--attack", "fgsm", "--eps", "0.05", "--out", "r.json"],
                   tmp_path, cli_env))
    d = json.loads((tmp_path / "r.json").read_text())
    x, y = load_dataset("mnist", "test", data_dir=mnist_dir, download=False, limit=64).tensors()
    r = evaluate(model, x, y, FGSM(), ThreatModel("linf", 0.05))
    assert d["n_examples"] == 64
    assert d["clean_acc"] == pytest.approx(r.clean_acc)
    assert d["robust_acc"] == pytest.approx(r.robust_acc)
    assert not (tmp_path / "cache" / "mnist").exists()  # nothing downloaded


def test_lecture_quick_fgsm_section(tmp_path: Path, cli_env: dict[str, str]) -> None:
    _ok(advlab_cli(["lecture", "--quick", "--dataset", "digits", "--out", "R",
                    "--sections", "fgsm"], tmp_path, cli_env))
    html = (tmp_path / "R" / "index.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert 'id="fgsm"' in html and 'id="panda"' not in html and 'id="curves"' not in html
    results = json.loads((tmp_path / "R" / "results.json").read_text())
    assert results["meta"]["dataset"] == "digits" and results["meta"]["mode"] == "quick"
    assert [s["key"] for s in results["sections"]] == ["fgsm"]
    data = results["sections"][0]["data"]
    assert data["eps"] == 0.25 and data["n"] == 360
    assert len(data["rows"]) == 2
    for row in data["rows"]:
        assert 0.0 <= row["robust_acc"] <= row["clean_acc"] <= 1.0
        assert row["adv_error_rate"] == pytest.approx(1 - row["robust_acc"])
    # trained models are cached under ADVLAB_CACHE, not in the working directory
    assert any((tmp_path / "cache" / "models").iterdir())


# --------------------------------------------------------------------------- bad input
#
# One bad-input case runs through a real subprocess; the others call ``advlab.cli.app.main``
# in this process (same code path: typer app + error wrapper) to save the interpreter start.


@dataclass
class Outcome:
    code: int | str | None
    out: str
    err: str


@pytest.fixture
def run_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Outcome]]:
    """``run_main(*args, width=1000)``: run the CLI entry point in-process in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADVLAB_DATA", raising=False)
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    rng_state = torch.get_rng_state()  # the CLI seeds the global RNG; give it back after

    def run(*args: str, width: int = 1000) -> Outcome:
        monkeypatch.setattr(app_module, "console", Console(stderr=True, width=width))
        monkeypatch.setattr(app_module, "out_console", Console(width=width))
        monkeypatch.setattr(sys, "argv", ["advlab", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            app_module.main()
        captured = capsys.readouterr()
        return Outcome(info.value.code, captured.out, captured.err)

    yield run
    torch.set_rng_state(rng_state)


def _usage_error(res: Outcome, *needles: str) -> str:
    assert res.code == 2, res.err
    lines = [ln for ln in res.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_unknown_dataset_subprocess(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = advlab_cli(["train", "--dataset", "imagenet", "--out", "x"], tmp_path, cli_env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert "unknown dataset 'imagenet'" in errors[0] and "digits" in errors[0]
    assert not (tmp_path / "x").exists()


def test_info(run_main: Callable[..., Outcome]) -> None:
    res = run_main("info")
    assert res.code in (0, None), res.err
    assert f"advlab {advlab.__version__}" in res.out
    for name in available_models() + available_datasets() + ["fgsm", "pgd", "bim"]:
        assert name in res.out


def test_unknown_model(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    res = run_main("train", "--model", "resnet", "--dataset", "digits", "--out", "x")
    _usage_error(res, "unknown model 'resnet'", "softmax", "rbf")
    assert not (tmp_path / "x").exists()


def test_negative_eps(run_main: Callable[..., Outcome], trained: tuple[Path, str],
                      tmp_path: Path) -> None:
    ckpt, _ = trained
    res = run_main("eval", str(ckpt), "--dataset", "digits", "--eps", "-1", "--out", "neg.json")
    _usage_error(res, "eps must be a finite number >= 0")
    assert not (tmp_path / "neg.json").exists()


def test_missing_checkpoint(run_main: Callable[..., Outcome]) -> None:
    _usage_error(run_main("eval", "no-such-dir", "--dataset", "digits"),
                 "model no-such-dir not found", "TorchScript file")


def test_corrupt_checkpoint(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    save_model(tmp_path / "bad", create_model("softmax", in_shape=(1, 8, 8), num_classes=10))
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"garbage")
    res = run_main("attack", "bad", "--dataset", "digits", "--out", "A")
    _usage_error(res, "not a valid safetensors file")
    assert not (tmp_path / "A").exists()


def test_folder_without_model_json(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.safetensors").write_bytes(b"garbage")
    _usage_error(run_main("eval", "bare", "--dataset", "digits"),
                 "bare is a folder but not an advlab checkpoint (no model.json)")


def test_resume_with_nothing_to_resume(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    res = run_main("train", "--dataset", "digits", "--model", "softmax", "--resume",
                   "--out", "empty")
    _usage_error(res, "nothing to resume")
    assert not (tmp_path / "empty" / "model.safetensors").exists()


def test_unknown_lecture_section(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    _usage_error(run_main("lecture", "--dataset", "digits", "--sections", "nope", "--out", "R"),
                 "unknown section 'nope'", "fgsm")
    assert not (tmp_path / "R").exists()



def test_missing_data_without_download(run_main: Callable[..., Outcome], tmp_path: Path) -> None:
    # the lecture falls back to digits for mnist, so cifar10 is the missing dataset here
    res = run_main("lecture", "--dataset", "cifar10", "--no-download",
                   "--data-dir", str(tmp_path / "nonexistent"), "--out", "R")
    _usage_error(res, "CIFAR", "not found", "download=False")


@pytest.mark.parametrize("cmd", [["train", "--out", "x"], ["eval", "x"], ["attack", "x"]])
def test_no_download_on_train_eval_attack(run_main: Callable[..., Outcome], tmp_path: Path,
                                          cmd: list[str], trained: tuple[Path, str]) -> None:
    args = list(cmd)
    if cmd[0] != "train":
        args[1] = str(trained[0])
    res = run_main(*args, "--dataset", "mnist", "--no-download",
                   "--data-dir", str(tmp_path / "nonexistent"))
    _usage_error(res, "MNIST", "not found", "download=False")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag,value,needle", [("--combine", "nope", "--combine"),
                                                ("--attack", "nope", "--attack")])
def test_transfer_ensemble_bad_settings_fail_before_training(
        run_main: Callable[..., Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        flag: str, value: str, needle: str) -> None:
    import advlab.cli.cmd_transfer as cmd_transfer

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was trained before the settings were checked")

    monkeypatch.setattr(cmd_transfer, "_family", no_training)
    res = run_main("transfer", "ensemble", "--dataset", "digits", flag, value,
                   "--out", "ens.json")
    _usage_error(res, needle)
    assert not (tmp_path / "ens.json").exists()


def test_missing_mnist_and_download_fails(run_main: Callable[..., Outcome],
                                          tmp_path: Path) -> None:
    res = run_main("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nonexistent"),
                   "--out", "x")
    _usage_error(res, "MNIST (train) not found", "download failed")


def test_eval_json_on_stdout_is_valid(run_main: Callable[..., Outcome], trained: tuple[Path, str],
                                      tmp_path: Path) -> None:
    ckpt, _ = trained
    spaced = tmp_path / "a model directory with a rather long name for the json test"
    spaced.mkdir()
    for f in ("model.safetensors", "model.json"):
        (spaced / f).write_bytes((ckpt / f).read_bytes())
    res = run_main("eval", spaced.name, "--dataset", "digits", "--attack", "fgsm", "--eps", "0.1",
                   "--limit", "32", width=80)  # what rich uses when stdout is a pipe
    assert res.code == 0, res.err
    d = json.loads(res.out)
    assert d["model"] == spaced.name and d["n_examples"] == 32


def test_train_refuses_to_overwrite_a_checkpoint(tmp_path, module_env):  # type: ignore[no-untyped-def]
    def run_cli(*a: str) -> subprocess.CompletedProcess[str]:
        return advlab_cli(list(a), tmp_path, module_env)

    out = tmp_path / "m"
    args = ["train", "--model", "logistic", "--dataset", "digits", "--classes", "3,7", "--epochs", "1",
            "--out", str(out)]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    before = (out / "model.safetensors").read_bytes()
    again = run_cli(*args, "--seed", "1")
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
    assert (out / "model.safetensors").read_bytes() == before  # nothing lost
    assert run_cli(*args, "--resume", "--overwrite").returncode == 2
    assert run_cli(*args, "--seed", "1", "--overwrite").returncode == 0
    assert (out / "model.safetensors").read_bytes() != before
